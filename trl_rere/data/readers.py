"""Reading the files of every layout: CSV rows and JSON with errors that name the file, the row and the line, and
finding one category's file set (`{Category}_5_{dates}`).
"""

from __future__ import annotations

import ast
import csv
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Sequence as SequenceFeature, Value

from ..catalog import locate_utf8_error
from .errors import DataError


# D3's process.py names every file `{Category}_5_{first month}-{last month}` (5-core data); the text before the first
# `_5_` is the category key, and the whole stem identifies one file set (catalog and splits of one preprocessing run).
CATEGORY_FILE_MARKER = "_5_"

DATA_HELP = (
    "The preprocessed files (info/{Category}_5_*.txt, train|valid|test/{Category}_5_*.csv) are the ones the ReRe "
    "(github.com/sober-clever/ReRe) and D3 (github.com/SAI990323/DecodingMatters) scripts read from data/Amazon/; "
    "examples/prepare_data.py builds them from raw interaction files (Amazon Reviews 2018 or 2023, or your own "
    "table). Pass the folder that holds info/, train/, valid/ and test/."
)

# The columns of every split the loaders return, whatever the layout.
SPLIT_FEATURES = Features(
    {
        "prompt": Value("string"),
        "target": Value("string"),
        "target_item_id": Value("int64"),
        "history_titles": SequenceFeature(Value("string")),
        "history_item_ids": SequenceFeature(Value("int64")),
        "user_id": Value("string"),
    }
)


# -- fields -----------------------------------------------------------------------------------------------------------
def parse_list(value: str, column: str, item_type: type) -> list:
    try:
        parsed = ast.literal_eval(value)  # data only: literal_eval cannot call anything
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        kind = type(e).__name__
        raise ValueError(f"column {column!r} is not a Python list literal ({kind}): {value[:80]!r}") from None
    if not isinstance(parsed, (list, tuple)):
        raise ValueError(f"column {column!r} holds a {type(parsed).__name__}, not a list: {value[:80]!r}")
    for k, x in enumerate(parsed):
        # bool is an int subclass; a True in an id list is corruption, not an id.
        if not isinstance(x, item_type) or isinstance(x, bool):
            raise ValueError(
                f"column {column!r}: element {k} is {x!r} ({type(x).__name__}), expected {item_type.__name__}"
            )
    return list(parsed)


def parse_int(value: str, column: str) -> int:
    try:
        return int(value.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"column {column!r} is not an integer: {value!r}") from None


def parse_history(row: dict, required_columns: Sequence[str], items_column: str) -> tuple[list[int], list[str], int]:
    """`(history item ids, the history's `items_column` values, target item id)` of one CSV row, after checking that
    the row has exactly the header's fields and two history lists of one length; raises ValueError otherwise."""
    if None in row:
        raise ValueError(f"{len(row[None])} more fields than the header has")
    missing = [c for c in required_columns if row.get(c) is None]
    if missing:
        raise ValueError(f"fewer fields than the header has (no value for {', '.join(missing)})")
    history_ids = parse_list(row["history_item_id"], "history_item_id", int)
    history_items = parse_list(row[items_column], items_column, str)
    if len(history_ids) != len(history_items):
        raise ValueError(f"history_item_id has {len(history_ids)} items but {items_column} has {len(history_items)}")
    if not history_ids:
        raise ValueError("the history is empty")
    return history_ids, history_items, parse_int(row["item_id"], "item_id")


def split_record(row: dict, target: str, target_item_id: int, history: list[str], history_ids: list[int]) -> dict:
    """One row of a split (the columns of `SPLIT_FEATURES` but the prompt) from a parsed CSV `row`."""
    return {
        "target": target,
        "target_item_id": target_item_id,
        "history_titles": history,
        "history_item_ids": history_ids,
        "user_id": row["user_id"],
    }


# -- CSV --------------------------------------------------------------------------------------------------------------
def finish_split(records: dict[str, list], label: str, skipped: list[tuple[int, int, str]], data_row: int) -> Dataset:
    """The split's dataset, after one warning for the rows `on_error="skip"` dropped; no row left is an error."""
    if skipped:
        first = ", ".join(f"row {r} (line {ln})" for r, ln, _ in skipped[:5])
        warnings.warn(
            f"{label}: skipped {len(skipped)} malformed row(s) of {data_row}, e.g. {first}; first error: "
            f"{skipped[0][2]}",
            stacklevel=3,
        )
    if not records["prompt"]:
        raise DataError(f"{label}: no usable rows (read {data_row}, skipped {len(skipped)})")
    return Dataset.from_dict(records, features=SPLIT_FEATURES)


def read_csv_rows(
    path: str,
    label: str,
    required_columns: Sequence[str],
    parse_row: Callable[[dict], dict],
    on_error: str,
    skipped: list[tuple[int, int, str]],
) -> tuple[list[tuple[int, int, dict]], int]:
    """Parses the interaction CSV at `path` row by row: `([(data row, line, parse_row(row)), ...], data rows read)`.

    A row for which `parse_row` raises `ValueError` raises `DataError` naming `label`, the data row and the CSV line
    or, with `on_error="skip"`, goes to `skipped` as `(data row, line, why)`. Bytes that are not UTF-8 are an error
    naming the line."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return _read_rows(f, label, required_columns, parse_row, on_error, skipped)
    except UnicodeDecodeError as e:
        line, what = locate_utf8_error(path, e)
        raise DataError(f"{label}: line {line}: {what}" if line else f"{label}: {what}") from None


def _read_rows(f, label, required_columns, parse_row, on_error, skipped):
    reader = csv.DictReader(f)
    header = reader.fieldnames
    if header is None:
        raise DataError(f"{label}: the file is empty (no header line)")
    absent = [c for c in required_columns if c not in header]
    if absent:
        raise DataError(f"{label}: line 1: missing column(s) {', '.join(absent)}; the header is {header}")
    rows = []
    data_row = 0
    while True:
        line = reader.line_num + 1  # a quoted field may span lines: report where the record starts
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"{label}: line {line}: the CSV itself is malformed: {e}") from None
        data_row += 1
        try:
            rows.append((data_row, line, parse_row(row)))
        except ValueError as e:
            if on_error == "raise":
                raise DataError(f"{label}: data row {data_row} (line {line}): {e}") from None
            skipped.append((data_row, line, str(e)))
    return rows, data_row


# -- JSON -------------------------------------------------------------------------------------------------------------
def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON document at `path`; a file that is not JSON or not UTF-8 is a `DataError` naming the file, the line
    and the column, and `what` the file should hold."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg}); expected {what}") from None
    except UnicodeDecodeError as e:
        line, why = locate_utf8_error(path, e)
        raise DataError(f"{path}: line {line}: {why}" if line else f"{path}: {why}") from None


def read_item_map(path: str | os.PathLike, what: str) -> dict[int, Any]:
    """A JSON object keyed by item id (MiniOneRec's `index/*.json` files) as `{item id: value}`; a file that is not
    such an object, or a key that is not an integer, is a `DataError` naming the file and the key. `what` says what
    the values are."""
    path = os.fspath(path)
    return items_by_id(read_json(path, f"a JSON object mapping item ids to {what}"), path, what)


def items_by_id(raw: Any, path: str, what: str) -> dict[int, Any]:
    """`read_item_map` of an already parsed document `raw` read from `path`."""
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object mapping item ids to {what}, got {type(raw).__name__}")
    items = {}
    for key, value in raw.items():
        try:
            items[int(key)] = value
        except ValueError:
            raise DataError(f"{path}: key {key!r} is not an item id (an integer)") from None
    return items


# -- file sets --------------------------------------------------------------------------------------------------------
def _category_of(file_name: str, ext: str) -> str | None:
    """The category key of a `{Category}_5_{dates}{ext}` file name, None for any other name."""
    if not file_name.endswith(ext) or CATEGORY_FILE_MARKER not in file_name:
        return None
    return file_name.partition(CATEGORY_FILE_MARKER)[0] or None


def _files_in(folder: Path, ext: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _category_of(p.name, ext)) if folder.is_dir() else []


def find_category_files(
    data_dir: str | os.PathLike,
    category: str,
    splits: Sequence[str] = ("train", "valid", "test"),
    info_ext: str = ".txt",
    split_ext: str = ".csv",
) -> dict[str, Path]:
    """Finds one category's file set in the D3/ReRe layout: `{"info": info/{stem}{info_ext}, split:
    {split}/{stem}{split_ext}, ...}` with `stem = {category}_5_{dates}`, under `data_dir` or its `amazon/` or
    `Amazon/` subfolder.

    A file belongs to `category` only when the text before its first `_5_` is exactly `category`: a prefix glob would
    let `"Industrial"` pick up `Industrial_and_Scientific_5_*` and mislabel every prompt. The files must make exactly
    one set (one folder, one stem): a second date range or a second copy is an error listing them, since picking one
    would silently train on the wrong data. No file, or a set missing a split, raises `FileNotFoundError` naming the
    folders, the patterns looked for and the categories that do have files there.

    Example:
    ```python
    >>> from trl_rere.data import find_category_files
    >>> from trl_rere.testing import write_amazon_folder
    >>> data_dir = write_amazon_folder("tiny-data", category="Industrial_and_Scientific", splits=("test",))
    >>> find_category_files(data_dir, "Industrial_and_Scientific", splits=("test",))["test"].name
    'Industrial_and_Scientific_5_2016-10-2018-11.csv'
    >>> find_category_files(data_dir, "Industrial", splits=("test",))  # a prefix is not a category
    Traceback (most recent call last):
    ...
    FileNotFoundError: ...
    ```
    """
    if not isinstance(category, str) or not category.strip():
        raise ValueError(f"category must be a non-empty file-name key such as 'Toys_and_Games', got {category!r}")
    if isinstance(splits, str):
        splits = (splits,)
    if "info" in splits:
        raise ValueError(f"'info' is the catalog's folder, not a split; got splits={list(splits)}")
    base = Path(data_dir)
    if not base.is_dir():
        raise FileNotFoundError(f"data directory not found: {base} (looking for category {category!r}). {DATA_HELP}")
    roots: list[Path] = []
    for root in [base] + [base / sub for sub in ("amazon", "Amazon")]:
        # A case-insensitive file system has amazon/ and Amazon/ as one folder; count it once.
        if root.is_dir() and all(not root.samefile(r) for r in roots):
            roots.append(root)
    kinds = [("info", "info", info_ext)] + [(split, split, split_ext) for split in splits]
    sets: dict[tuple[Path, str], dict[str, Path]] = {}
    for root in roots:
        for kind, folder, ext in kinds:
            for path in _files_in(root / folder, ext):
                if _category_of(path.name, ext) == category:
                    sets.setdefault((root, path.name[: -len(ext)]), {})[kind] = path
    if len(sets) > 1:
        listing = "; ".join(
            f"{stem} in {root} ({', '.join(str(p.relative_to(root)) for p in files.values())})"
            for (root, stem), files in sorted(sets.items())
        )
        raise ValueError(
            f"category {category!r} has {len(sets)} file sets under {base}: {listing}. Keep one set per category, or "
            f"load the files explicitly with ItemCatalog.from_info_file and load_amazon_split"
        )
    # With a set found, only its folder matters; without one, every folder looked in.
    searched = [next(iter(sets))[0]] if sets else roots
    files = next(iter(sets.values()), {})
    missing = [(kind, folder, ext) for kind, folder, ext in kinds if kind not in files]
    if missing:
        folders = [(root / folder, ext) for root in searched for _, folder, ext in missing]
        looked = ", ".join(str(folder / f"{category}{CATEGORY_FILE_MARKER}*{ext}") for folder, ext in folders)
        present = sorted({_category_of(p.name, ext) for folder, ext in folders for p in _files_in(folder, ext)})
        have = f"categories with such files there: {', '.join(present)}" if present else "no category has files there"
        raise FileNotFoundError(
            f"no {', '.join(kind for kind, _, _ in missing)} file for category {category!r} under {base}; looked for "
            f"{looked}; {have}. {DATA_HELP}"
        )
    return {kind: files[kind] for kind, _, _ in kinds}


