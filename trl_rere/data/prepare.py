"""Preparation from raw interactions: review dumps or a user's own tables to the D3/ReRe layout.

The layout is the one `load_amazon` reads (`info/{stem}.txt`, `{train,valid,test}/{stem}.csv` with
`stem = f"{category}_{k}_{start year}-{start month}-{end year}-{end month}"`), and for the same input and window the
rows, item ids and titles are the ones the authors' `data/process.py` (github.com/sober-clever/ReRe) writes:

1. titles: `&quot;` and `&amp;` unescaped, spaces then double quotes stripped; an item is dropped if any of its metadata
   records has no title, a `<span id` title, a title of one character or of more than 20 space-separated words
   (the last good record's title is used otherwise),
2. the window: interactions with `start <= timestamp <= end`, both the first second of a month (UTC),
3. the iterative k-core inside the window (users and items with at least `k` interactions, counted with repeats),
4. item ids: the core's items in order of first appearance, shuffled by `random.Random(seed)`,
5. one row per interaction after a user's first (their interactions sorted by time, ties in input order), with the
   at most `max_history` interactions before it as the history,
6. all rows sorted by the target's time (ties: users in order of first appearance, then by position) and cut 8:1:1.

Everything runs on columns (polars, loaded lazily: `pip install 'trl-rere[data]'`); only the catalog's per-item
strings are built in Python, once per item.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .raw_readers import (
    TIME_UNITS,
    PreparationError,
    _parse_month,
    month_start,
    read_amazon2018,
    read_amazon2023,
    read_json_lines,
    read_table,
    require_polars,
    timestamps_to_seconds,
)
from .raw_synthetic import write_synthetic_amazon2018

__all__ = [
    "SPLITS",
    "SPLIT_COLUMNS",
    "TIME_UNITS",
    "PreparationError",
    "PrepareConfig",
    "PreparedInteractions",
    "clean_titles",
    "file_stem",
    "first_appearance_order",
    "k_core",
    "month_start",
    "prepare_amazon2018",
    "prepare_amazon2023",
    "prepare_interactions",
    "prepare_table",
    "read_amazon2018",
    "read_amazon2023",
    "read_json_lines",
    "read_table",
    "require_polars",
    "shuffled_ids",
    "timestamps_to_seconds",
    "write_layout",
    "write_synthetic_amazon2018",
]

SPLITS = ("train", "valid", "test")
# The column order and names of the authors' split CSVs.
SPLIT_COLUMNS = (
    "user_id",
    "item_asins",
    "item_asin",
    "history_item_id",
    "item_id",
    "history_item_title",
    "item_title",
    "history_rating",
    "rating",
    "history_timestamp",
    "timestamp",
)


# -- configuration ----------------------------------------------------------------------------------------------------
@dataclass
class PrepareConfig:
    """How raw interactions become the D3/ReRe layout; the defaults are the authors' (`data/process.py`) for the
    published Industrial_and_Scientific files.

    Parameters:
        k (`int`): iterative k-core; users and items keep at least `k` interactions inside the window.
        start, end (`str` or `None`): the window, `YYYY-MM`, both months' 1st at 00:00 UTC included; `None` takes the
            data's own first / last month.
        max_history (`int`): at most this many earlier interactions per row.
        seed (`int`): seed of the authors' item-id shuffle.
        extend_window_min_items (`int` or `None`): the authors' window-extension rule, off by default.
        earliest_year (`int`): where that rule stops.
        chunk_rows (`int`): rows built and written at a time.

    Example:
    ```python
    >>> from trl_rere.data import PrepareConfig
    >>> config = PrepareConfig(start="2016-10", end="2018-11")
    >>> config.k, config.start_month_tuple
    (5, (2016, 10))
    >>> PrepareConfig(start="2018-11", end="2016-10")
    Traceback (most recent call last):
    ...
    ValueError: start='2018-11' is after end='2016-10': the window is empty
    ```
    """

    k: int = field(default=5, metadata={"help": "Iterative k-core: users and items keep at least k interactions."})
    start: str | None = field(
        default="1996-10",
        metadata={"help": "First month of the window, YYYY-MM (from its 1st, UTC); None: the data's first month."},
    )
    end: str | None = field(
        default="2018-11",
        metadata={
            "help": "End of the window, YYYY-MM (its 1st at 00:00 UTC, kept); None: after the data's last month."
        },
    )
    max_history: int = field(default=10, metadata={"help": "At most this many earlier interactions per row."})
    seed: int = field(default=42, metadata={"help": "Seed of the item-id shuffle (random.Random(seed).shuffle)."})
    extend_window_min_items: int | None = field(
        default=None,
        metadata={
            "help": "The authors' window-extension rule, off by default: while the k-core has fewer items than "
            "this and the start year is after `earliest_year`, move the start one year back."
        },
    )
    earliest_year: int = field(default=1996, metadata={"help": "The window-extension rule stops at this year."})
    chunk_rows: int = field(default=200_000, metadata={"help": "Rows built and written at a time (memory bound)."})

    def __post_init__(self):
        self.start_month_tuple = None if self.start is None else _parse_month(self.start, "start")
        self.end_month_tuple = None if self.end is None else _parse_month(self.end, "end")
        for name in ("k", "max_history", "chunk_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.start is not None and self.end is not None and self.start_month_tuple > self.end_month_tuple:
            raise ValueError(f"start={self.start!r} is after end={self.end!r}: the window is empty")


def file_stem(category: str, k: int, start: tuple[int, int], end: tuple[int, int]) -> str:
    """The authors' file name: months unpadded, as `f"{year}-{month}"` writes them.

    Examples:
    ```python
    >>> file_stem("Toys_and_Games", 5, (2016, 10), (2018, 11))
    'Toys_and_Games_5_2016-10-2018-11'
    >>> file_stem("Office", 5, (2017, 1), (2018, 2))
    'Office_5_2017-1-2018-2'
    ```
    """
    return f"{category}_{k}_{start[0]}-{start[1]}-{end[0]}-{end[1]}"


# -- the authors' filters ---------------------------------------------------------------------------------------------
def clean_titles(items, passes: int = 1):
    """The authors' title rules on a metadata frame (`item, title[, text]`, file order): one row per kept item with
    its cleaned title (see the module docstring), in order of first record. `passes > 1` cleans and checks the
    titles that many times, as the authors' window-extension recursion does.

    Examples:
    ```python
    >>> import polars as pl
    >>> meta = pl.DataFrame({"item": ["a", "b", "c", "a"], "title": [' "Saw &amp; Drill" ', "x", None, "Saw"]})
    >>> clean_titles(meta).rows()
    [('a', 'Saw')]
    ```
    """
    pl = require_polars()
    title, clean = pl.col("title"), pl.col("_clean")
    frame = items.with_columns(title.alias("_clean"), title.is_null().alias("_bad"))
    for _ in range(passes):
        frame = frame.with_columns(_bad=pl.col("_bad") | clean.str.contains("<span id", literal=True))
        cleaned = clean.str.replace_all("&quot;", '"', literal=True).str.replace_all("&amp;", "&", literal=True)
        frame = frame.with_columns(_clean=cleaned.str.strip_chars(" ").str.strip_chars('"'))
        frame = frame.with_columns(
            _bad=pl.col("_bad")
            | (clean.str.len_chars() <= 1)
            | (clean.str.count_matches(" ", literal=True) > 19)  # len(title.split(" ")) > 20
        )
    extra = ["text"] if "text" in items.columns else []
    return (
        frame.group_by("item", maintain_order=True)
        .agg(pl.col("_bad").any(), pl.col("_clean").last().alias("title"), *[pl.col(c).last() for c in extra])
        .filter(~pl.col("_bad"))
        .drop("_bad")
    )


def k_core(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """The iterative k-core of a bipartite multigraph given as integer codes per interaction: a boolean mask of the
    interactions whose user and item both keep at least `k` of them (repeats counted, as the authors' script does).

    Examples:
    ```python
    >>> import numpy as np
    >>> k_core(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 1]), 2).tolist()
    [True, True, True, True, False]
    ```
    """
    alive = np.arange(len(users))
    u, i = users, items
    while len(alive):
        bad = (np.bincount(u)[u] < k) | (np.bincount(i)[i] < k)
        if not bad.any():
            break
        keep = ~bad
        alive, u, i = alive[keep], u[keep], i[keep]
    mask = np.zeros(len(users), dtype=bool)
    mask[alive] = True
    return mask


def first_appearance_order(codes: np.ndarray) -> np.ndarray:
    """Renumbers integer codes by order of first appearance: `[7, 3, 7, 5] -> [0, 1, 0, 2]`.

    Examples:
    ```python
    >>> import numpy as np
    >>> first_appearance_order(np.array([7, 3, 7, 5])).tolist()
    [0, 1, 0, 2]
    ```
    """
    uniques, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniques))
    return rank[inverse.reshape(-1)]


def shuffled_ids(num_items: int, seed: int) -> np.ndarray:
    """The item id of each item (numbered by first appearance): `random.seed(seed); random.shuffle(items)` then ids
    in list order, as the authors' script. The shuffle depends only on the list's length, so a list of indices
    gives the same permutation as their list of ASINs.

    Examples:
    ```python
    >>> asins = ["B1", "B2", "B3", "B4"]
    >>> random.seed(42); random.shuffle(asins)  # the authors' two lines
    >>> [asins.index(a) for a in ["B1", "B2", "B3", "B4"]] == shuffled_ids(4, 42).tolist()
    True
    ```
    """
    order = list(range(num_items))
    random.Random(seed).shuffle(order)
    ids = np.empty(num_items, dtype=np.int64)
    ids[np.asarray(order, dtype=np.int64)] = np.arange(num_items)
    return ids


# -- from interactions to rows ----------------------------------------------------------------------------------------
@dataclass
class PreparedInteractions:
    """The k-core interactions sorted by user (first appearance) then time, and the rows in split order.

    `item_names[c]`, `titles[c]` and `item_ids[c]` describe the core's item `c` (numbered by first appearance);
    `users[u]` names user `u`; per interaction (user-time order) `user`, `item` (item code), `rating`, `timestamp`
    and `position` (0 for a user's first); `rows` indexes the interactions that are targets, in split order, and
    `split_sizes` cuts them into train, valid and test."""

    users: list
    item_names: list
    titles: list
    item_ids: np.ndarray
    user: np.ndarray
    item: np.ndarray
    rating: object  # a polars Series: its dtype decides how ratings are written
    timestamp: np.ndarray
    position: np.ndarray
    rows: np.ndarray
    split_sizes: tuple[int, int, int]
    start: tuple[int, int]
    end: tuple[int, int]
    k: int
    max_history: int
    texts: list | None = None
    chunk_rows: int = 200_000

    @property
    def num_items(self) -> int:
        return len(self.item_names)

    def stem(self, category: str) -> str:
        return file_stem(category, self.k, self.start, self.end)


def _window_core(user_codes, item_codes, timestamps, start_ts: int, end_ts: int, k: int):
    in_window = np.flatnonzero((timestamps >= start_ts) & (timestamps <= end_ts))
    core = k_core(user_codes[in_window], item_codes[in_window], k)
    return in_window[core]


def prepare_interactions(interactions, items, config: PrepareConfig | None = None, **overrides) -> PreparedInteractions:
    """Applies the authors' preparation (module docstring) to `interactions` (`user, item, rating, timestamp` in
    seconds, in source order) and raw item metadata `items` (`item, title[, text]`), keyword overrides going to
    `PrepareConfig`. Raises `PreparationError` when nothing is left.

    Examples:
    ```python
    >>> import polars as pl
    >>> users = [u for u in "abc" for _ in range(3)]
    >>> inter = pl.DataFrame({"user": users, "item": ["x", "y", "z"] * 3, "rating": [5.0] * 9,
    ...                       "timestamp": [1e9 + t for t in range(9)]}).cast({"timestamp": pl.Int64})
    >>> meta = pl.DataFrame({"item": ["x", "y", "z"], "title": ["Saw", "Drill", "Glue"]})
    >>> prepared = prepare_interactions(inter, meta, k=3)
    >>> prepared.split_sizes, [prepared.titles[c] for c in prepared.item[prepared.rows[:2]]]
    ((4, 1, 1), ['Drill', 'Glue'])
    ```
    """
    pl = require_polars()
    config = dataclasses.replace(config, **overrides) if config else PrepareConfig(**overrides)
    for name in ("user", "item", "rating", "timestamp"):
        if name not in interactions.columns:
            raise PreparationError(f"interactions: no {name!r} column (columns: {interactions.columns})")
    raw_items = items.select([c for c in ("item", "title", "text") if c in items.columns])

    def encode(passes: int):
        catalog = clean_titles(raw_items, passes=passes)
        if catalog.height == 0:
            raise PreparationError(
                "no item has a usable title (one with 2 to 20 words, without '<span id'): check the metadata "
                "file's 'title' field"
            )
        # Integer codes only: the interactions' strings are not copied (one gather of user names at the end).
        # A categorical column is mapped through its distinct values, without a string per interaction.
        column = interactions["item"]
        distinct = column.unique() if column.dtype == pl.Categorical else column
        index = distinct.cast(pl.String).replace_strict(
            catalog["item"], np.arange(catalog.height), default=-1, return_dtype=pl.Int64
        )
        codes = index.to_numpy()
        if column.dtype == pl.Categorical:
            lookup = np.full(int(distinct.to_physical().max()) + 1, -1, dtype=np.int64)
            lookup[distinct.to_physical().to_numpy()] = codes
            codes = lookup[column.to_physical().to_numpy()]
        titled = np.flatnonzero(codes >= 0)
        return catalog, titled, codes[titled], all_users[titled], all_times[titled]

    all_users = interactions["user"].cast(pl.Categorical).to_physical().to_numpy()
    all_times = interactions["timestamp"].to_numpy()
    if interactions.height == 0:
        raise PreparationError("there are no interactions to prepare: the interactions file has no rows")
    # No bound given: the data's own range, as whole months.
    first, last = time.gmtime(int(all_times.min())), time.gmtime(int(all_times.max()))
    start_year, start_month = config.start_month_tuple or (first.tm_year, first.tm_mon)
    end = config.end_month_tuple or ((last.tm_year + 1, 1) if last.tm_mon == 12 else (last.tm_year, last.tm_mon + 1))
    first_year, end_ts = start_year, month_start(*end)
    catalog, titled, item_codes, user_codes, timestamps = encode(1)
    while True:
        kept = _window_core(user_codes, item_codes, timestamps, month_start(start_year, start_month), end_ts, config.k)
        num_items = len(np.unique(item_codes[kept]))
        extend = config.extend_window_min_items
        if extend is None or num_items >= extend or start_year <= config.earliest_year:
            break
        start_year -= 1
        # The authors' script recurses on metadata it has already cleaned in place: each extra year cleans the
        # titles once more (`12&amp;quot;` -> `12&quot;` -> `12"`), and a title must pass the filters every time.
        catalog, titled, item_codes, user_codes, timestamps = encode(1 + first_year - start_year)
    if len(kept) == 0:
        raise PreparationError(
            f"no interaction is left after the window {start_year}-{start_month:02d}..{end[0]}-{end[1]:02d}, "
            f"the titles filter and the {config.k}-core ({len(titled)} of {interactions.height} interactions have an item "
            f"with a usable title): widen --start/--end or lower --k"
        )

    users = first_appearance_order(user_codes[kept])
    items_first = first_appearance_order(item_codes[kept])
    timestamps = timestamps[kept]
    order = np.lexsort((timestamps, users))  # stable: ties stay in input order
    user_sorted, item_sorted, time_sorted = users[order], items_first[order], timestamps[order]
    starts = np.flatnonzero(np.r_[True, user_sorted[1:] != user_sorted[:-1]])
    position = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    targets = np.flatnonzero(position >= 1)
    rows = targets[np.argsort(time_sorted[targets], kind="stable")]
    n = len(rows)
    if n == 0:
        raise PreparationError("the k-core has no user with two interactions: there is no row to write; lower --k")
    train, valid = int(n * 0.8), int(n * 0.9)  # the authors' float cut, kept bit for bit

    # Names of the core's users and items, in first-appearance order.
    source_rows = titled[kept]  # rows of `interactions`
    user_first = np.unique(users, return_index=True)[1]
    item_first = np.unique(items_first, return_index=True)[1]
    item_table = catalog[item_codes[kept][item_first]]
    return PreparedInteractions(
        users=interactions["user"].gather(source_rows[user_first]).to_list(),
        item_names=item_table["item"].to_list(),
        titles=item_table["title"].to_list(),
        item_ids=shuffled_ids(len(item_first), config.seed),
        user=user_sorted,
        item=item_sorted,
        rating=interactions["rating"].gather(source_rows[order]),
        timestamp=time_sorted,
        position=position,
        rows=rows,
        split_sizes=(train, valid - train, n - valid),
        start=(start_year, start_month),
        end=end,
        k=config.k,
        max_history=config.max_history,
        texts=item_table["text"].to_list() if "text" in item_table.columns else None,
        chunk_rows=config.chunk_rows,
    )


# -- writing the layout -----------------------------------------------------------------------------------------------
def _python_list(columns):
    """`str(list)` of the non-null values of `columns` (oldest first), each already a Python repr."""
    pl = require_polars()
    return pl.concat_str([pl.lit("["), pl.concat_str(columns, separator=", ", ignore_nulls=True), pl.lit("]")])


def write_layout(prepared: PreparedInteractions, out_dir: str | os.PathLike, category: str, progress: bool = True):
    """Writes `out_dir/info/{stem}.txt` (`title\\titem_id` in id order) and `out_dir/{train,valid,test}/{stem}.csv`
    in the authors' column formats (Python list reprs, CRLF lines, minimal quoting), building `chunk_rows` rows at a
    time; with item texts, also `out_dir/text/{stem}.jsonl` (`item_id, asin, title, text`). Returns the paths."""
    pl = require_polars()
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    stem = prepared.stem(category)
    paths = {"info": out_dir / "info" / f"{stem}.txt"} | {s: out_dir / s / f"{stem}.csv" for s in SPLITS}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    by_id = np.argsort(prepared.item_ids)
    with open(paths["info"], "w", encoding="utf-8", newline="") as f:
        f.writelines(f"{prepared.titles[c]}\t{i}\n" for i, c in enumerate(by_id.tolist()))
    if prepared.texts is not None:
        paths["text"] = out_dir / "text" / f"{stem}.jsonl"
        paths["text"].parent.mkdir(parents=True, exist_ok=True)
        with open(paths["text"], "w", encoding="utf-8") as f:
            for i, c in enumerate(by_id.tolist()):
                record = {"item_id": i, "asin": prepared.item_names[c], "title": prepared.titles[c]}
                f.write(json.dumps(record | {"text": prepared.texts[c] or ""}, ensure_ascii=False) + "\n")

    # Per-item and per-value strings, built once: Python's own repr is the authors' format by definition.
    asin = pl.Series(prepared.item_names, dtype=pl.String)
    asin_repr = pl.Series([repr(a) for a in prepared.item_names], dtype=pl.String)
    title = pl.Series(prepared.titles, dtype=pl.String)
    title_repr = pl.Series([repr(t) for t in prepared.titles], dtype=pl.String)
    item_id = pl.Series(prepared.item_ids).cast(pl.String)
    users = pl.Series(prepared.users, dtype=pl.String)
    rating_values, rating_codes = np.unique(prepared.rating.to_numpy(), return_inverse=True)
    rating_repr = pl.Series([repr(v) for v in rating_values.tolist()], dtype=pl.String)
    rating_codes = rating_codes.reshape(-1)
    timestamp = pl.Series(prepared.timestamp).cast(pl.String)
    item_strings = pl.DataFrame({"asin": asin_repr, "id": item_id, "title": title_repr})
    header = (",".join(SPLIT_COLUMNS) + "\r\n").encode()

    def column(table, codes, valid=None):
        index = pl.Series(codes)
        if valid is not None:
            index = pl.select(pl.when(pl.Series(valid)).then(index)).to_series()
        return table.gather(index)

    bounds = np.cumsum((0,) + prepared.split_sizes)
    total = int(bounds[-1])
    bar = tqdm(total=total, desc=f"writing {stem}", unit="row", disable=not progress)
    for split, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:]):
        with open(paths[split], "wb") as f:
            f.write(header)
            for chunk_lo in range(int(lo), int(hi), prepared.chunk_rows):
                rows = prepared.rows[chunk_lo : min(int(hi), chunk_lo + prepared.chunk_rows)]
                pos = prepared.position[rows]
                history = []
                for back in range(prepared.max_history, 0, -1):  # oldest first
                    valid = pos >= back
                    at = np.where(valid, rows - back, 0)
                    # Earlier than the user's first interaction: null, which concat_str leaves out.
                    history.append(
                        item_strings[prepared.item[at]]
                        .with_columns(rating=rating_repr.gather(rating_codes[at]), time=timestamp.gather(at))
                        .select(pl.when(pl.Series(valid)).then(pl.all()).name.suffix(str(back)))
                    )
                item = prepared.item[rows]
                chunk = pl.DataFrame(
                    {
                        "user_id": column(users, prepared.user[rows]),
                        "item_asin": column(asin, item),
                        "item_id": column(item_id, item),
                        "item_title": column(title, item),
                        "rating": column(rating_repr, rating_codes[rows]),
                        "timestamp": column(timestamp, rows),
                    }
                ).hstack(pl.concat(history, how="horizontal").get_columns())
                lists = {
                    "item_asins": "asin",
                    "history_item_id": "id",
                    "history_item_title": "title",
                    "history_rating": "rating",
                    "history_timestamp": "time",
                }
                chunk = chunk.select(
                    pl.col(name)
                    if name not in lists
                    else _python_list(
                        [pl.col(f"{lists[name]}{back}") for back in range(prepared.max_history, 0, -1)]
                    ).alias(name)
                    for name in SPLIT_COLUMNS
                )
                chunk.write_csv(f, include_header=False, line_terminator="\r\n", quote_style="necessary")
                bar.update(len(rows))
    bar.close()
    return paths


# -- one call per source ----------------------------------------------------------------------------------------------
def _prepare_amazon(read, reviews, meta, category, out_dir, config=None, description=False, progress=True,
                    block_bytes=None, **overrides) -> dict[str, Path]:
    interactions, items = read(reviews, meta, description=description, block_bytes=block_bytes)
    prepared = prepare_interactions(interactions, items, config, **overrides)
    return write_layout(prepared, out_dir, category, progress=progress)


def prepare_amazon2018(reviews: str | os.PathLike, meta: str | os.PathLike, category: str, out_dir: str | os.PathLike,
                       config: PrepareConfig | None = None, **options) -> dict[str, Path]:
    """Amazon Reviews 2018 JSON-lines files to the D3/ReRe layout under `out_dir` (see `write_layout`); the same rows,
    item ids and titles as the authors' `data/process.py` for the same window. Options: `description=True` also
    writes the items' descriptions (`text/{stem}.jsonl`), `progress`, `block_bytes` (how the JSON lines are read,
    see `read_json_lines`), and any `PrepareConfig` field, which overrides `config`'s. Returns the written paths.

    Examples:
    ```python
    >>> paths = write_synthetic_amazon2018("raw", num_interactions=3000, num_items=60, num_users=300)
    >>> out = prepare_amazon2018(paths["reviews"], paths["meta"], "Tools", "data", progress=False)
    >>> sorted(str(p) for p in out.values())  # doctest: +NORMALIZE_WHITESPACE
    ['data/info/Tools_5_1996-10-2018-11.txt', 'data/test/Tools_5_1996-10-2018-11.csv',
     'data/train/Tools_5_1996-10-2018-11.csv', 'data/valid/Tools_5_1996-10-2018-11.csv']
    ```
    """
    return _prepare_amazon(read_amazon2018, reviews, meta, category, out_dir, config, **options)


def prepare_amazon2023(reviews: str | os.PathLike, meta: str | os.PathLike, category: str, out_dir: str | os.PathLike,
                       config: PrepareConfig | None = None, **options) -> dict[str, Path]:
    """Amazon Reviews 2023 JSONL files (`read_amazon2023`: reviews with `user_id, parent_asin, rating, timestamp` in
    milliseconds, metadata with `parent_asin, title`) to the D3/ReRe layout under `out_dir`; items are parent ASINs
    and the written timestamps are seconds. Options as `prepare_amazon2018`'s. Returns the written paths.

    Example:
    ```python
    >>> import json
    >>> reviews = [{"user_id": f"u{u}", "parent_asin": f"P{(u + j) % 8}", "rating": 5.0,
    ...             "timestamp": 1_500_000_000_000 + 86_400_000 * j} for u in range(30) for j in range(6)]
    >>> with open("reviews.jsonl", "w") as f:
    ...     f.writelines(json.dumps(r) + "\\n" for r in reviews)
    >>> with open("meta.jsonl", "w") as f:
    ...     f.writelines(json.dumps({"parent_asin": f"P{i}", "title": f"Lamp {i}"}) + "\\n" for i in range(8))
    >>> out = prepare_amazon2023("reviews.jsonl", "meta.jsonl", "Lamps", "data", progress=False, start=None, end=None)
    >>> out["info"].name
    'Lamps_5_2017-7-2017-8.txt'
    ```
    """
    return _prepare_amazon(read_amazon2023, reviews, meta, category, out_dir, config, **options)


def prepare_table(
    interactions: str | os.PathLike,
    items: str | os.PathLike,
    category: str,
    out_dir: str | os.PathLike,
    config: PrepareConfig | None = None,
    progress: bool = True,
    table_options: dict | None = None,
    **overrides,
) -> dict[str, Path]:
    """A user's own interaction and item tables (`read_table`, options in `table_options`, e.g. the column names) to
    the D3/ReRe layout under `out_dir`. Returns the written paths.

    Example:
    ```python
    >>> with open("events.csv", "w") as f:
    ...     _ = f.write("user,item,time\\n" + "".join(f"u{u},i{(u + j) % 8},{1_500_000_000 + 86_400 * j}\\n"
    ...                                                 for u in range(30) for j in range(6)))
    >>> with open("items.csv", "w") as f:
    ...     _ = f.write("item,title\\n" + "".join(f"i{i},Lamp {i}\\n" for i in range(8)))
    >>> out = prepare_table("events.csv", "items.csv", "Lamps", "data", progress=False, start=None, end=None,
    ...                     table_options={"user_column": "user", "item_column": "item", "time_column": "time"})
    >>> sorted(out)
    ['info', 'test', 'train', 'valid']
    ```
    """
    interactions, items = read_table(interactions, items, **(table_options or {}))
    prepared = prepare_interactions(interactions, items, config, **overrides)
    return write_layout(prepared, out_dir, category, progress=progress)
