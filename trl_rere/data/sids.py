"""MiniOneRec's semantic-ID layout: `index/{Category}.index.json` (item id -> its code tokens),
`info/{Category}_5_*.txt` (`sid<TAB>title<TAB>item_id`) and split CSVs with `history_item_sid` / `item_sid`, read into
datasets of SID prompts (MiniOneRec's wording).

Typical use (a tiny folder in MiniOneRec's layout stands in for `../shared/data/minionerec`):
```python
>>> from trl_rere import ReReConfig, ReReTrainer, add_sid_tokens, load_amazon
>>> from trl_rere.testing import tiny_causal_lm, train_tokenizer, write_minionerec_folder
>>> data_dir = write_minionerec_folder("tiny-sid-data")
>>> catalog, splits = load_amazon(data_dir, "Industrial_and_Scientific", ("valid", "test"), item_format="sid")
>>> tokenizer = train_tokenizer(splits["valid"]["prompt"])
>>> codes = add_sid_tokens(tokenizer, catalog)  # one token per code; add them before building a model from scratch
>>> tiny_causal_lm(tokenizer).save_pretrained("tiny-sid-model")
>>> args = ReReConfig(output_dir="rere-sid", item_format="sid", num_generations=4, per_device_train_batch_size=8,
...                   max_steps=1, report_to=[], use_cpu=True)
>>> trainer = ReReTrainer(model="tiny-sid-model", args=args, train_dataset=splits["valid"],
...                       processing_class=tokenizer, catalog=catalog)
>>> trainer.trie.max_length  # three codes, the newline, EOS
5
```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset, DatasetDict

from ..catalog import ItemCatalog
from ..sid_tokens import split_sid
from .prompts import (
    SID_MAX_HISTORY,
    SID_PROMPT_TEMPLATE,
    build_sid_prompt,
    check_length_limit,
    fit_split_prompts,
)
from .readers import (
    SPLIT_FEATURES,
    DataError,
    find_category_files,
    finish_split,
    parse_history,
    parse_int,
    read_csv_rows,
    read_item_map,
    split_record,
)


SID_REQUIRED_COLUMNS = ("user_id", "history_item_id", "item_id", "history_item_sid", "item_sid")

SID_DATA_HELP = (
    "The semantic-ID files are MiniOneRec's (github.com/AkaliKong/MiniOneRec, data/Amazon/), or those "
    "`examples/prepare_data.py sids` writes: index/{Category}.index.json (item id -> its code tokens), "
    "info/{Category}_5_*.txt (sid<TAB>title<TAB>item_id) and train|valid|test/{Category}_5_*.csv (with "
    "history_item_sid and item_sid columns). Pass the folder that holds index/, info/ and the splits (or its parent, "
    "if the folder is called minionerec/)."
)


# -- index and info ------------------------------------------------------------------------------------------------------------
def read_sid_index(path: str | os.PathLike) -> dict[int, str]:
    """Reads MiniOneRec's `index/{Category}.index.json` (item id -> list of code tokens) as `{item id: SID string}`."""
    path = os.fspath(path)
    index: dict[int, str] = {}
    for item, codes in read_item_map(path, "code lists").items():
        if not isinstance(codes, list) or not codes or not all(isinstance(c, str) for c in codes):
            raise DataError(f"{path}: item {item}: expected a non-empty list of code strings, got {codes!r}")
        sid = "".join(codes)
        try:
            if split_sid(sid) != codes:
                raise ValueError(f"the codes {codes} are not one <x_N> code each")
        except ValueError as e:
            raise DataError(f"{path}: item {item}: {e}") from None
        index[item] = sid
    if not index:
        raise DataError(f"{path}: the index is empty")
    return index


def read_sid_info(path: str | os.PathLike, index: dict[int, str] | None = None) -> tuple[ItemCatalog, dict[int, str]]:
    """Reads a MiniOneRec info file (`sid<TAB>title<TAB>item_id` per line) into (catalog keyed by SID, titles by id).

    The title is what lies between the first and the last tab (titles may contain tabs). With `index` (from
    `read_sid_index`), every item's SID must be the index's, and the two files must list the same items.
    """
    path = os.fspath(path)
    mapping: dict[str, list[int]] = {}
    titles: dict[int, str] = {}
    lines: dict[int, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            where = f"{path}:{lineno}"
            if len(fields) < 3:
                raise DataError(f"{where}: expected 'sid<TAB>title<TAB>item_id', found {len(fields)} field(s): "
                                f"{line[:80]!r}")
            sid, title, item_text = fields[0], "\t".join(fields[1:-1]), fields[-1]
            try:
                split_sid(sid)
                item = parse_int(item_text, "item_id")
            except ValueError as e:
                raise DataError(f"{where}: {e}") from None
            if item in lines:
                raise DataError(f"{where}: item id {item} already defined on line {lines[item]}")
            if index is not None:
                if item not in index:
                    raise DataError(f"{where}: item id {item} (SID {sid}) is missing from the index")
                if index[item] != sid:
                    raise DataError(f"{where}: item id {item} has SID {sid} here but {index[item]} in the index")
            lines[item] = lineno
            titles[item] = title
            mapping.setdefault(sid, []).append(item)
    if not mapping:
        raise DataError(f"{path}: the info file is empty")
    if index is not None and len(index) != len(lines):
        extra = sorted(set(index) - set(lines))
        raise DataError(f"{path}: {len(extra)} item(s) of the index are not in the info file, e.g. item id {extra[0]}")
    return ItemCatalog(titles=list(mapping), title_to_item_ids=mapping, source=path), titles


def _parse_sid_row(row: dict, catalog: ItemCatalog, max_history: int, template: str) -> dict:
    history_ids, history_sids, item_id = parse_history(row, SID_REQUIRED_COLUMNS, "history_item_sid")
    pairs = [(f"history item {k}", i, s) for k, (i, s) in enumerate(zip(history_ids, history_sids))]
    for what, item, sid in pairs + [("item_sid", item_id, row["item_sid"])]:
        try:
            split_sid(sid)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
        if sid not in catalog:
            raise ValueError(f"{what}: SID {sid} (item id {item}) is not in the index ({catalog.source})")
        try:
            expected = catalog.title_of(item)
        except KeyError:
            raise ValueError(f"{what}: item id {item} is not in the index ({catalog.source})") from None
        if sid != expected:
            raise ValueError(f"{what}: SID {sid} differs from the index's SID {expected} for item id {item}")
    history_sids, history_ids = history_sids[-max_history:], history_ids[-max_history:]
    record = split_record(row, row["item_sid"], item_id, history_sids, history_ids)
    return {"prompt": build_sid_prompt(history_sids, max_history, template), **record}


def load_sid_split(
    csv_path: str | os.PathLike,
    catalog: ItemCatalog,
    split_name: str | None = None,
    max_history: int = SID_MAX_HISTORY,
    template: str = SID_PROMPT_TEMPLATE,
    tokenizer=None,
    max_prompt_length: int | None = None,
    on_error: str = "raise",
) -> Dataset:
    """Reads one MiniOneRec `train|valid|test/*.csv` file into a dataset of SID prompts.

    Columns as `load_amazon_split`'s: `prompt` (MiniOneRec's wording, `build_sid_prompt`), `target`
    (the next item's SID string), `target_item_id`, `history_titles` (the history items' SIDs, the last `max_history`,
    oldest first), `history_item_ids` and `user_id`. With a `tokenizer` and `max_prompt_length`, the oldest history
    items are dropped until a prompt fits. Every SID must be well-formed and agree with `catalog` (built from the
    index and info files) for its item id; a row that breaks this raises `DataError` naming the file, the 1-based data
    row and the CSV line (with `on_error="skip"`, such rows are dropped and one warning says how many).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not isinstance(max_history, int) or isinstance(max_history, bool) or max_history < 1:
        raise ValueError(f"max_history must be a positive integer, got {max_history!r}")
    check_length_limit(tokenizer, max_prompt_length)
    path = os.fspath(csv_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"interaction file not found: {path}. {SID_DATA_HELP}")
    label = f"{path} ({split_name})" if split_name else path
    skipped: list[tuple[int, int, str]] = []
    rows, data_row = read_csv_rows(
        path, label, SID_REQUIRED_COLUMNS, lambda row: _parse_sid_row(row, catalog, max_history, template), on_error,
        skipped,
    )
    records: dict[str, list] = {k: [] for k in SPLIT_FEATURES}
    for _, _, parsed in rows:
        for k, v in parsed.items():
            records[k].append(v)
    if max_prompt_length is not None:
        rebuild = lambda k, sids: build_sid_prompt(sids, max_history, template)  # noqa: E731
        fit_split_prompts(records, rows, rebuild, tokenizer, max_prompt_length, label, on_error, skipped)
    return finish_split(records, label, skipped, data_row)


def sid_data_root(data_dir: str | os.PathLike, category: str) -> Path:
    """The folder holding `index/{category}.index.json`: `data_dir` itself or its `minionerec/` subfolder."""
    base = Path(data_dir)
    candidates = [base] + [base / sub for sub in ("minionerec", "MiniOneRec") if (base / sub).is_dir()]
    looked = [str(c / "index" / f"{category}.index.json") for c in candidates]
    for root, index in zip(candidates, looked):
        if os.path.isfile(index):
            return root
    raise FileNotFoundError(f"no semantic-ID index for category {category!r} under {base}; looked for: "
                            f"{', '.join(looked)}. {SID_DATA_HELP}")


def load_sid_amazon(
    data_dir: str | os.PathLike,
    category: str = "Industrial_and_Scientific",
    splits: Sequence[str] = ("train", "valid", "test"),
    *,
    category_name: str | None = None,
    **kwargs,
) -> tuple[ItemCatalog, DatasetDict]:
    """Loads a dataset in MiniOneRec's layout: `load_amazon(data_dir, category, splits, item_format="sid")`.

    Reads `index/{category}.index.json` and `info/{category}_5_*.txt` into a catalog keyed by SID string (cross-checked
    against each other), and each split's `{split}/{category}_5_*.csv` with `load_sid_split` (other keyword arguments:
    `max_history`, `template`, `tokenizer`, `max_prompt_length`, `on_error`). The category must match the file names
    exactly (the part before `_5_`). A missing file raises `FileNotFoundError` listing the paths it tried.

    Example:
    ```python
    >>> from trl_rere.data import load_sid_amazon
    >>> from trl_rere.testing import write_minionerec_folder
    >>> catalog, splits = load_sid_amazon(write_minionerec_folder("tiny-sid-data"), splits=("test",), max_history=2)
    >>> row = splits["test"][0]  # SID strings: the target is a catalog key
    >>> row["target"] in catalog, len(row["history_titles"]) <= 2, row["prompt"].endswith("### Response:\\n")
    (True, True, True)
    ```
    """
    if category_name is not None:
        raise ValueError("category_name names the items in title prompts; SID prompts have no category noun")
    if isinstance(splits, str):
        splits = (splits,)
    if not isinstance(category, str) or not category.strip():
        raise ValueError(f"category must be a dataset name such as 'Industrial_and_Scientific', got {category!r}")
    root = sid_data_root(data_dir, category)
    files = find_category_files(root, category, splits)  # the same `{Category}_5_{dates}` naming as the title data
    index = read_sid_index(root / "index" / f"{category}.index.json")
    catalog, _ = read_sid_info(files["info"], index)
    return catalog, DatasetDict({s: load_sid_split(files[s], catalog, split_name=s, **kwargs) for s in splits})
