"""The D3/ReRe title layout: `info/{Category}_5_{dates}.txt` (`title<TAB>item_id`) and one CSV per split with
`user_id, history_item_id, item_id, history_item_title, item_title`, read into datasets of the authors' prompts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from datasets import Dataset, DatasetDict

from ..catalog import ItemCatalog
from .prompts import (
    CATEGORY_NAMES,
    DEFAULT_INSTRUCTIONS,
    DEFAULT_PROMPT_TEMPLATE,
    MAX_HISTORY,
    category_name as category_noun,
    check_category_name,
    check_length_limit,
    fit_split_prompts,
    instruction_index,
    known_category_name,
    render_prompt,
)
from .readers import (
    DATA_HELP,
    SPLIT_FEATURES,
    DataError,
    find_category_files,
    finish_split,
    parse_history,
    read_csv_rows,
    split_record,
)


REQUIRED_COLUMNS = ("user_id", "history_item_id", "item_id", "history_item_title", "item_title")


def _detect_category(path: str) -> str:
    name = os.path.basename(path)
    for key in sorted(CATEGORY_NAMES, key=len, reverse=True):
        if name == key or name.startswith(key + "_") or name.startswith(key + "."):
            return key
    raise DataError(
        f"{path}: cannot tell the category from the file name (known: {', '.join(CATEGORY_NAMES)}); pass category="
    )


def _parse_row(row: dict, catalog: ItemCatalog, max_history: int) -> dict:
    history_ids, history_titles, item_id = parse_history(row, REQUIRED_COLUMNS, "history_item_title")
    try:
        target = catalog.title_of(item_id)
    except KeyError:
        raise ValueError(f"target item id {item_id} is not in the catalog ({catalog.source or 'in memory'})") from None
    if row["item_title"] != target:
        raise ValueError(
            f"item_title {row['item_title'][:80]!r} differs from the catalog's title {target[:80]!r} for item id "
            f"{item_id}: is the catalog the info file of this dataset?"
        )
    for k, (hid, htitle) in enumerate(zip(history_ids, history_titles)):
        try:
            expected = catalog.title_of(hid)
        except KeyError:
            raise ValueError(f"history item id {hid} (position {k}) is not in the catalog") from None
        if htitle != expected:
            raise ValueError(
                f"history title {k} {htitle[:80]!r} differs from the catalog's title {expected[:80]!r} for item id "
                f"{hid}"
            )
    history_ids = history_ids[-max_history:]
    return split_record(row, target, item_id, [catalog.title_of(i) for i in history_ids], history_ids)


def load_amazon_split(
    csv_path: str | os.PathLike,
    catalog: ItemCatalog,
    category: str | None = None,
    split_name: str | None = None,
    max_history: int = MAX_HISTORY,
    seed: int = 42,
    on_error: str = "raise",
    template: str = DEFAULT_PROMPT_TEMPLATE,
    instructions: Sequence[str] = DEFAULT_INSTRUCTIONS,
    *,
    category_name: str | None = None,
    tokenizer: Any = None,
    max_prompt_length: int | None = None,
) -> Dataset:
    """Reads one `train|valid|test/*.csv` interaction file into a `datasets.Dataset` of prompts.

    Columns: `prompt`, `target` (the next item's title, taken from `catalog` by item id), `target_item_id`,
    `history_titles` and `history_item_ids` (the last `max_history`, oldest first: the items the prompt shows) and
    `user_id`. Each row gets one of `instructions`, picked by a stable hash of `(seed, data row number)`, so prompts are
    reproducible whatever the order or process. The prompt calls the items `category_name` when given, else the noun
    of `category` (see `category_name()`), which defaults to the one in the file name (`Toys_and_Games_5_...csv`).

    With `tokenizer` and `max_prompt_length`, a prompt longer than `max_prompt_length` tokens (counted as by
    `prompt_token_count`) is rebuilt with fewer history items, oldest dropped first, until it fits; the instruction and
    the fixed ending stay. A row that does not fit even with one item is an error.

    A malformed row (unparsable list, wrong types, history lists of unequal length, an item id missing from the
    catalog, an `item_title` that differs from the catalog's, a prompt that cannot fit) raises `DataError` naming the
    file, the 1-based data row and the CSV line. With `on_error="skip"` such rows are dropped and one warning reports
    how many and which. A file that is not UTF-8 is always an error (it names the line and the byte).

    Example:
    ```python
    >>> from trl_rere import ItemCatalog
    >>> from trl_rere.data import load_amazon_split
    >>> from trl_rere.testing import write_amazon_folder
    >>> data_dir = write_amazon_folder("tiny-data", splits=("test",))
    >>> catalog = ItemCatalog.from_info_file(data_dir / "info" / "Toys_and_Games_5_2016-10-2018-11.txt")
    >>> test = load_amazon_split(data_dir / "test" / "Toys_and_Games_5_2016-10-2018-11.csv", catalog)
    >>> test[0]["target"] in catalog
    True
    ```
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not isinstance(max_history, int) or max_history < 1:
        raise ValueError(f"max_history must be a positive integer, got {max_history!r}")
    if not instructions:
        raise ValueError("instructions must not be empty")
    check_length_limit(tokenizer, max_prompt_length)
    path = os.fspath(csv_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"interaction file not found: {path}. {DATA_HELP}")
    if category_name is not None:
        name = check_category_name(category_name)
    else:
        name = category_noun(category if category is not None else _detect_category(path))
    label = f"{path} ({split_name})" if split_name else path

    skipped: list[tuple[int, int, str]] = []
    rows, data_row = read_csv_rows(
        path, label, REQUIRED_COLUMNS, lambda row: _parse_row(row, catalog, max_history), on_error, skipped
    )
    records: dict[str, list] = {k: [] for k in SPLIT_FEATURES}
    # Each kept row's instruction is fixed by its data row number, also when the prompt-length pass rebuilds it.
    chosen = [instructions[instruction_index(seed, r, len(instructions))] for r, _, _ in rows]
    for (_, _, parsed), instruction in zip(rows, chosen):
        parsed["prompt"] = render_prompt(parsed["history_titles"], name, instruction, template, max_history)
        for k, v in parsed.items():
            records[k].append(v)
    if max_prompt_length is not None:
        rebuild = lambda k, titles: render_prompt(titles, name, chosen[k], template, max_history)  # noqa: E731
        fit_split_prompts(records, rows, rebuild, tokenizer, max_prompt_length, label, on_error, skipped)
    return finish_split(records, label, skipped, data_row)


def load_title_amazon(
    data_dir: str | os.PathLike,
    category: str = "Industrial_and_Scientific",
    splits: Sequence[str] = ("train", "valid", "test"),
    *,
    category_name: str | None = None,
    **kwargs,
) -> tuple[ItemCatalog, DatasetDict]:
    """Loads a dataset in the D3/ReRe layout: the catalog `info/{category}_5_{dates}.txt` and one CSV per split,
    `{split}/{category}_5_{dates}.csv`, under `data_dir` (or its `amazon/` / `Amazon/` subfolder); see
    `find_category_files` for how the files are matched (exactly one set per category). `load_amazon` calls it for
    title items.

    The prompts call the items `category_name` when given, else `CATEGORY_NAMES[category]`; a category without a
    known name needs `category_name=` (the original prompts pluralize it by appending "s"). Other keyword arguments go
    to `load_amazon_split`, e.g. `tokenizer=` and `max_prompt_length=` to drop the oldest history items of prompts
    that would be too long.

    Example:
    ```python
    >>> from trl_rere.data import load_title_amazon
    >>> from trl_rere.testing import write_amazon_folder
    >>> data_dir = write_amazon_folder("tiny-data", category="Industrial_and_Scientific", splits=("valid", "test"))
    >>> catalog, splits = load_title_amazon(data_dir, "Industrial_and_Scientific", splits=("valid", "test"))
    >>> splits["valid"][0]["prompt"].splitlines()[-3].startswith("The user has palyed the following industrial")
    True
    ```
    """
    if isinstance(splits, str):
        splits = (splits,)
    files = find_category_files(data_dir, category, splits)
    name = check_category_name(category_name) if category_name is not None else known_category_name(category)
    catalog = ItemCatalog.from_info_file(files["info"])
    datasets = {s: load_amazon_split(files[s], catalog, split_name=s, category_name=name, **kwargs) for s in splits}
    return catalog, DatasetDict(datasets)
