"""Prompt construction and loaders for the D3/ReRe sequential-recommendation data, plus a tiny synthetic catalog.

The prompt layout, the 11 paraphrased instructions (typos included) and the category names are copied from the public
ReRe code (`github.com/sober-clever/ReRe`, `data.py`, class `D3Dataset`), itself taken from D3
(`github.com/SAI990323/DecodingMatters`), so that a model trained with this package sees exactly the authors' prompts.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import os
import random
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Features, Sequence as SequenceFeature, Value

from .catalog import ItemCatalog, locate_utf8_error
from .item_format import ItemFormat, get_item_format


class DataError(ValueError):
    """A malformed interaction file; the message names the file, the data row and the CSV line."""


# The authors' prompt. `{instruction}` is one of `DEFAULT_INSTRUCTIONS`, `{history}` the quoted titles joined by
# ",\t". "palyed", the blank-looking " " line and the plural "{category}s" (which gives "toys and gamess") are the
# original's and are kept on purpose: the point is to reproduce its inputs token for token.
DEFAULT_PROMPT_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request. \n"
    "\n"
    "### Instruction:\n"
    "{instruction}\n"
    " \n"
    "### User Input: \n"
    "The user has palyed the following {category}s before: {history}\n"
    "\n"
    "### Response:\n"
)

# Verbatim from the ReRe/D3 code, typos included ("recetenly enjoy", "may bought"). Most of them ask, oddly, for items
# the user played *before*; the models were trained on them anyway, so they are the default. `{category}` is replaced.
DEFAULT_INSTRUCTIONS: tuple[str, ...] = (
    "Given a list of {category} the user recetenly enjoy, please write a new {category} that the user may bought",
    "Considering the {category} that has recently captured the user's interest, kindly create a compilation of other "
    "{category} that the user might have played prior to this.",
    "Based on the user's current gaming preference, please draft a list of potential {category} they may have "
    "experienced beforehand.",
    "Reflecting on the {category} the user has taken pleasure in recently, we request that you formulate a list of "
    "{category} that may have preceded the user's current enjoyment.",
    "In light of the recent gaming enjoyment expressed by the user, please assemble a list of {category} that could "
    "potentially include past titles the user has engaged with.",
    "Taking into account the {category} that has lately provided enjoyment to the user, please put together an "
    "inventory of {category} the user might have explored previously.",
    "Given the user's newfound enjoyment of a particular {category}, would you kindly generate a roster of other "
    "{category} that might resonate with their past gaming experiences?",
    "In response to the user's recent fondness for a specific {category}, we seek your assistance in listing possible "
    "{category} the user may have delighted in earlier.",
    "With respect to the {category} currently enjoyed by the user, please compile a suggestive list of {category} "
    "they may have played in the past.",
    "Bearing in mind the {category} that the user has recently been enthralled by, please construct a catalog of "
    "other {category} that the user potentially partook in beforehand.",
    "In relation to the user's recent entertainment with a given {category}, it would be appreciated if you could "
    "curate a list of {category} that might form part of the user's previous gaming history.",
)

# File-name prefix of each dataset -> the noun the prompt uses (as in the authors' `category_dict`).
CATEGORY_NAMES: dict[str, str] = {
    "Toys_and_Games": "toys and games",
    "Industrial_and_Scientific": "industrial and scientific items",
    "Office_Products": "office products",
    "Yelp": "restaurants",
}

HISTORY_SEPARATOR = ",\t"
MAX_HISTORY = 10

# D3's process.py names every file `{Category}_5_{first month}-{last month}` (5-core data); the text before the first
# `_5_` is the category key, and the whole stem identifies one file set (catalog and splits of one preprocessing run).
CATEGORY_FILE_MARKER = "_5_"

REQUIRED_COLUMNS = ("user_id", "history_item_id", "item_id", "history_item_title", "item_title")

DATA_HELP = (
    "The preprocessed files (info/{Category}_5_*.txt, train|valid|test/{Category}_5_*.csv) are the ones the ReRe "
    "(github.com/sober-clever/ReRe) and D3 (github.com/SAI990323/DecodingMatters) scripts read from data/Amazon/; "
    "D3's code/process.py builds them from the Amazon Reviews 2018 5-core files "
    "(meta_{Category}.json and {Category}_5.json). Pass the folder that holds info/, train/, valid/ and test/."
)

_FEATURES = Features(
    {
        "prompt": Value("string"),
        "target": Value("string"),
        "target_item_id": Value("int64"),
        "history_titles": SequenceFeature(Value("string")),
        "history_item_ids": SequenceFeature(Value("int64")),
        "user_id": Value("string"),
    }
)


# -- prompts ----------------------------------------------------------------------------------------------------------
def category_name(category: str) -> str:
    """The noun used in prompts: a known dataset key (`"Toys_and_Games"`) is mapped through `CATEGORY_NAMES`, another
    key with underscores is lower-cased with spaces, and anything else (`"board games"`) is used as is."""
    if not isinstance(category, str) or not category.strip():
        raise ValueError(f"category must be a non-empty string, got {category!r}")
    if category in CATEGORY_NAMES:
        return CATEGORY_NAMES[category]
    if "_" in category and " " not in category:
        return category.replace("_", " ").lower()
    return category


# The loaders take a `category_name=` argument, which shadows the function inside them.
_category_noun = category_name


def _check_category_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"category_name must be a non-empty string (the noun the prompt uses), got {name!r}")
    return name


def instruction_index(seed: int, row: int, num_instructions: int = len(DEFAULT_INSTRUCTIONS)) -> int:
    """Which instruction row `row` gets: a stable hash of `(seed, row)`, so the choice does not depend on the process,
    the order rows are read in or `PYTHONHASHSEED` (Python's `hash()` does)."""
    digest = hashlib.blake2b(f"{seed}:{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_instructions


def format_history(history_titles: Sequence[str], max_history: int = MAX_HISTORY) -> str:
    """The last `max_history` titles, oldest first, each quoted and joined by `",\\t"` as in the original."""
    titles = list(history_titles)[-max_history:] if max_history > 0 else []
    return HISTORY_SEPARATOR.join(f'"{t}"' for t in titles)


def build_prompt(
    history_titles: Sequence[str],
    category: str,
    instruction: str | None = None,
    template: str = DEFAULT_PROMPT_TEMPLATE,
    max_history: int = MAX_HISTORY,
) -> str:
    """Writes the prompt for one user: the last `max_history` history titles (oldest first) under an instruction.

    `category` is a dataset key or a noun (see `category_name`); `instruction` defaults to the first of
    `DEFAULT_INSTRUCTIONS` and may contain `{category}`. `template` is a `str.format` string with the fields
    `{instruction}`, `{category}` and `{history}`; keep it ending with the trie's `prompt_suffix`
    (`"### Response:\\n"`).

    Example:
    ```python
    >>> from trl_rere.data import build_prompt
    >>> prompt = build_prompt(["Red Ball", "Blue Car"], "Toys_and_Games")
    >>> prompt.splitlines()[-3]
    'The user has palyed the following toys and gamess before: "Red Ball",\\t"Blue Car"'
    ```
    """
    return _render_prompt(history_titles, category_name(category), instruction, template, max_history)


def _render_prompt(
    history_titles: Sequence[str], noun: str, instruction: str | None, template: str, max_history: int
) -> str:
    """`build_prompt` with the category's noun given as is (the loaders' `category_name=` is not a key to map)."""
    if isinstance(history_titles, str):
        raise TypeError("history_titles must be a sequence of titles, not a single string")
    if instruction is None:
        instruction = DEFAULT_INSTRUCTIONS[0]
    # replace() rather than format(): instructions and titles may contain other braces.
    instruction = instruction.replace("{category}", noun)
    return template.format(instruction=instruction, category=noun, history=format_history(history_titles, max_history))


def prompt_token_count(tokenizer, prompt: str) -> int:
    """The number of tokens `prompt` takes as the trainer's input, counted as TRL's `GRPOTrainer` tokenizes a text
    prompt (`tokenizer(text=prompt)["input_ids"]`, so with the tokenizer's special tokens, e.g. a BOS); a limit checked
    on any other count could let a prompt through that is one token over it."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}; use prompt_token_counts for a list")
    return len(tokenizer(text=prompt)["input_ids"])


def prompt_token_counts(tokenizer, prompts: Sequence[str]) -> list[int]:
    """`prompt_token_count` for many prompts in one batched tokenizer call."""
    prompts = list(prompts)
    if not prompts:
        return []
    return [len(ids) for ids in tokenizer(text=prompts)["input_ids"]]


def _check_length_limit(tokenizer, max_prompt_length: int | None) -> None:
    if max_prompt_length is None:
        if tokenizer is not None:
            raise ValueError("tokenizer= is only used to enforce max_prompt_length=; pass both or neither")
        return
    if not isinstance(max_prompt_length, int) or isinstance(max_prompt_length, bool) or max_prompt_length < 1:
        raise ValueError(f"max_prompt_length must be a positive integer, got {max_prompt_length!r}")
    if tokenizer is None:
        raise ValueError(
            f"max_prompt_length={max_prompt_length} needs tokenizer=, the tokenizer of the model being trained, to "
            f"count the prompt's tokens"
        )


def _fit_prompt_length(
    records: dict[str, list],
    rebuild: Callable[[int, list[str]], str],
    tokenizer,
    max_prompt_length: int,
) -> dict[int, str]:
    """Drops the oldest history items of every prompt over `max_prompt_length` tokens until it fits, in place.

    `rebuild(row, titles)` writes row `row`'s prompt with the given history, so the instruction and the fixed ending
    stay as they are. Only rows over the limit are retokenized, and those by a binary search over the number of items
    kept, run for all of them in step so each round is one batched tokenizer call (about four rounds for ten items).
    Returns `{row: why}` for the rows that do not fit even with their most recent item alone; the caller reports them.
    """
    counts = prompt_token_counts(tokenizer, records["prompt"])
    # Per row over the limit: [fits, does not fit] bounds on the number of items kept; `kept` holds the fitting prompt.
    bounds = {i: [0, len(records["history_titles"][i])] for i, n in enumerate(counts) if n > max_prompt_length}
    kept: dict[int, str] = {}
    single: dict[int, int] = {i: counts[i] for i, (_, hi) in bounds.items() if hi == 1}
    while active := [i for i, (lo, hi) in bounds.items() if hi - lo > 1]:
        mids = [(bounds[i][0] + bounds[i][1]) // 2 for i in active]
        prompts = [rebuild(i, records["history_titles"][i][-k:]) for i, k in zip(active, mids)]
        for i, k, prompt, n in zip(active, mids, prompts, prompt_token_counts(tokenizer, prompts)):
            if n <= max_prompt_length:
                bounds[i][0], kept[i] = k, prompt
            else:
                bounds[i][1] = k
                if k == 1:
                    single[i] = n
    failures = {}
    for i, (k, _) in bounds.items():
        if k == 0:
            total = len(records["history_titles"][i])
            failures[i] = (
                f"the prompt has {single[i]} tokens even with only the most recent history item ({counts[i]} with "
                f"{total} item(s)), more than max_prompt_length={max_prompt_length}; raise max_prompt_length or use "
                f"a shorter template"
            )
            continue
        records["prompt"][i] = kept[i]
        records["history_titles"][i] = records["history_titles"][i][-k:]
        records["history_item_ids"][i] = records["history_item_ids"][i][-k:]
    return failures


def _drop_rows(records: dict[str, list], rows: set[int]) -> None:
    for column, values in records.items():
        records[column] = [v for i, v in enumerate(values) if i not in rows]


# -- real data --------------------------------------------------------------------------------------------------------
def _detect_category(path: str) -> str:
    name = os.path.basename(path)
    for key in sorted(CATEGORY_NAMES, key=len, reverse=True):
        if name == key or name.startswith(key + "_") or name.startswith(key + "."):
            return key
    raise DataError(
        f"{path}: cannot tell the category from the file name (known: {', '.join(CATEGORY_NAMES)}); pass category="
    )


def _parse_list(value: str, column: str, item_type: type) -> list:
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


def _parse_int(value: str, column: str) -> int:
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
    history_ids = _parse_list(row["history_item_id"], "history_item_id", int)
    history_items = _parse_list(row[items_column], items_column, str)
    if len(history_ids) != len(history_items):
        raise ValueError(f"history_item_id has {len(history_ids)} items but {items_column} has {len(history_items)}")
    if not history_ids:
        raise ValueError("the history is empty")
    return history_ids, history_items, _parse_int(row["item_id"], "item_id")


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
    return {
        "target": target,
        "target_item_id": item_id,
        "history_titles": [catalog.title_of(i) for i in history_ids],
        "history_item_ids": history_ids,
        "user_id": row["user_id"],
    }


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
    _check_length_limit(tokenizer, max_prompt_length)
    path = os.fspath(csv_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"interaction file not found: {path}. {DATA_HELP}")
    if category_name is not None:
        name = _check_category_name(category_name)
    else:
        name = _category_noun(category if category is not None else _detect_category(path))
    label = f"{path} ({split_name})" if split_name else path

    skipped: list[tuple[int, int, str]] = []
    rows, data_row = read_csv_rows(
        path, label, REQUIRED_COLUMNS, lambda row: _parse_row(row, catalog, max_history), on_error, skipped
    )
    records: dict[str, list] = {k: [] for k in _FEATURES}
    # Each kept row's instruction is fixed by its data row number, also when the prompt-length pass rebuilds it.
    chosen = [instructions[instruction_index(seed, r, len(instructions))] for r, _, _ in rows]
    for (_, _, parsed), instruction in zip(rows, chosen):
        parsed["prompt"] = _render_prompt(parsed["history_titles"], name, instruction, template, max_history)
        for k, v in parsed.items():
            records[k].append(v)
    if max_prompt_length is not None:
        failures = _fit_prompt_length(
            records,
            lambda k, titles: _render_prompt(titles, name, chosen[k], template, max_history),
            tokenizer,
            max_prompt_length,
        )
        if failures and on_error == "raise":
            k = min(failures)
            raise DataError(f"{label}: data row {rows[k][0]} (line {rows[k][1]}): {failures[k]}")
        skipped.extend((rows[k][0], rows[k][1], why) for k, why in failures.items())
        skipped.sort()
        _drop_rows(records, set(failures))
    return finish_split(records, label, skipped, data_row)


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
    return Dataset.from_dict(records, features=_FEATURES)


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


def _known_category_name(category: str) -> str:
    if category in CATEGORY_NAMES:
        return CATEGORY_NAMES[category]
    guess = category.replace("_", " ").lower()
    raise ValueError(
        f"the prompt's name for category {category!r} is not known (known: {', '.join(CATEGORY_NAMES)}); pass it as "
        f"category_name=, e.g. load_amazon(data_dir, {category!r}, category_name={guess + ' items'!r}): the prompt "
        f"reads 'The user has palyed the following {{category_name}}s before: ...'"
    )


def load_amazon(
    data_dir: str | os.PathLike,
    category: str = "Industrial_and_Scientific",
    splits: Sequence[str] = ("train", "valid", "test"),
    *,
    item_format: str | ItemFormat = "title",
    category_name: str | None = None,
    **kwargs,
) -> tuple[ItemCatalog, DatasetDict]:
    """Loads a dataset in the D3/ReRe layout: the catalog `info/{category}_5_{dates}.txt` and one CSV per split,
    `{split}/{category}_5_{dates}.csv`, under `data_dir` (or its `amazon/` / `Amazon/` subfolder); see
    `find_category_files` for how the files are matched (exactly one set per category).

    The prompts call the items `category_name` when given, else `CATEGORY_NAMES[category]`; a category without a
    known name needs `category_name=` (the original prompts pluralize it by appending "s"). Other keyword arguments go
    to `load_amazon_split`, e.g. `tokenizer=` and `max_prompt_length=` to drop the oldest history items of prompts
    that would be too long. `item_format="sid"` reads MiniOneRec's semantic-ID layout instead, with SID prompts and
    targets (`trl_rere.semantic_ids.load_sid_amazon`, which takes the same `tokenizer=` / `max_prompt_length=`).

    Example:
    ```python
    >>> from trl_rere.data import load_amazon
    >>> from trl_rere.testing import write_amazon_folder
    >>> data_dir = write_amazon_folder("tiny-data", category="Industrial_and_Scientific", splits=("valid", "test"))
    >>> catalog, splits = load_amazon(data_dir, "Industrial_and_Scientific", splits=("valid", "test"))
    >>> splits["test"].column_names
    ['prompt', 'target', 'target_item_id', 'history_titles', 'history_item_ids', 'user_id']
    ```
    """
    if get_item_format(item_format).name == "sid":
        from .semantic_ids import load_sid_amazon  # imported here: semantic_ids builds on this module

        if category_name is not None:
            raise ValueError("category_name names the items in title prompts; SID prompts have no category noun")
        return load_sid_amazon(data_dir, category, splits, **kwargs)
    if isinstance(splits, str):
        splits = (splits,)
    files = find_category_files(data_dir, category, splits)
    name = _check_category_name(category_name) if category_name is not None else _known_category_name(category)
    catalog = ItemCatalog.from_info_file(files["info"])
    datasets = {s: load_amazon_split(files[s], catalog, split_name=s, category_name=name, **kwargs) for s in splits}
    return catalog, DatasetDict(datasets)


# -- synthetic data ---------------------------------------------------------------------------------------------------
_BASES = (
    "Wooden Train Set", "Building Blocks", "Puzzle", "Plush Bear", "Race Car Track", "Dollhouse", "Chess Set",
    "Magic Kit", "Kite", "Water Blaster", "Robot Arm Kit", "Play Dough", "Card Game", "Marble Run", "Toy Drum",
    "Science Lab", "Yo-Yo", "Board Game", "Action Figure", "Rubber Duck",
)
_VARIANTS = (
    "{base}",
    "{base} Deluxe",
    '{base} "{name}" Edition',
    "{base} - Expansion Pack {n}",
    "{base}, {n} Pieces",
    "{base} for Kids {n}+",
    "{base} Mini",
    "{name}'s {base}",
    '{base} 12" {name}',
    "{base} (Series {n})",
)
_NAMES = ("Ocean", "Galaxy", "Jungle", "Castle", "Rainbow", "Arctic", "Dino", "Pirate", "Sunny", "Mountain Pass")


def _synthetic_titles(num_items: int, num_chains: int, rng: random.Random) -> list[list[str]]:
    sizes = [num_items // num_chains + (c < num_items % num_chains) for c in range(num_chains)]
    bases = rng.sample(_BASES, num_chains) if num_chains <= len(_BASES) else [
        f"{_BASES[c % len(_BASES)]} {c // len(_BASES) + 2}" for c in range(num_chains)
    ]
    seen: set[str] = set()
    chains = []
    for c, size in enumerate(sizes):
        chain = []
        # The first member is the bare base title, so it is a prefix of the chain's other titles.
        variants = [_VARIANTS[0]] + rng.sample(_VARIANTS[1:], len(_VARIANTS) - 1)
        for j in range(size):
            fmt = variants[j % len(variants)]
            title = fmt.format(base=bases[c], name=rng.choice(_NAMES), n=rng.randint(2, 12))
            k = 2
            while title in seen:
                title = f"{fmt.format(base=bases[c], name=rng.choice(_NAMES), n=rng.randint(2, 12))} Vol. {k}"
                k += 1
            seen.add(title)
            chain.append(title)
        chains.append(chain)
    return chains


def check_synthetic_sizes(num_items: int, num_users: int, history_len: tuple[int, int], chain_length: int) -> None:
    """Rejects sizes that no synthetic catalog of series can have."""
    if num_items < 2:
        raise ValueError(f"num_items must be at least 2, got {num_items}")
    if num_users < 1:
        raise ValueError(f"num_users must be at least 1, got {num_users}")
    lo, hi = history_len
    if not 1 <= lo <= hi:
        raise ValueError(f"history_len must be (min, max) with 1 <= min <= max, got {history_len}")
    if chain_length < 2:
        raise ValueError(f"chain_length must be at least 2, got {chain_length}")


def synthetic_users(
    chains: list[list[str]],
    item_ids: dict[str, int],
    num_users: int,
    history_len: tuple[int, int],
    rng: random.Random,
    render: Callable[[int, list[str]], str],
) -> dict[str, list]:
    """Users with a learnable rule: each history is a run of consecutive items of one series and the target is the
    series' next item (cyclically). `render(user, history)` writes the prompt. Columns as `_FEATURES`."""
    records: dict[str, list] = {k: [] for k in _FEATURES}
    for u in range(num_users):
        chain = chains[rng.randrange(len(chains))]
        start = rng.randrange(len(chain))
        h = rng.randint(*history_len)
        history = [chain[(start + j) % len(chain)] for j in range(h)]
        target = chain[(start + h) % len(chain)]
        records["prompt"].append(render(u, history))
        records["target"].append(target)
        records["target_item_id"].append(item_ids[target])
        records["history_titles"].append(history)
        records["history_item_ids"].append([item_ids[t] for t in history])
        records["user_id"].append(f"user_{u:05d}")
    return records


def synthetic_catalog_dataset(
    num_items: int = 64,
    num_users: int = 256,
    history_len: tuple[int, int] = (2, 6),
    chain_length: int = 8,
    seed: int = 0,
    category: str = "toys and games",
    template: str = DEFAULT_PROMPT_TEMPLATE,
    instructions: Sequence[str] = DEFAULT_INSTRUCTIONS,
    *,
    tokenizer: Any = None,
    max_prompt_length: int | None = None,
) -> tuple[ItemCatalog, Dataset]:
    """A tiny catalog and a dataset of users with a learnable rule, for offline demos and tests.

    Items form "series" (chains of about `chain_length` titles); within a series item k is always followed by item
    k+1 (cyclically), and each user's history is a run of consecutive items of one series, so the target is determined
    by the last history title. Titles look like product names: some are prefixes of others (`"Kite"`, `"Kite Deluxe"`),
    some contain quotes or commas. The columns are those of `load_amazon_split`; split with
    `dataset.train_test_split(test_size=..., seed=...)`. `tokenizer` and `max_prompt_length` limit the prompt length
    as in `load_amazon_split` (the rule survives: the last history item is always kept).

    Example:
    ```python
    >>> from trl_rere.data import synthetic_catalog_dataset
    >>> catalog, dataset = synthetic_catalog_dataset(num_items=32, num_users=64, seed=0)
    >>> splits = dataset.train_test_split(test_size=0.25, seed=0)
    >>> all(t in catalog for t in dataset["target"])
    True
    ```
    """
    check_synthetic_sizes(num_items, num_users, history_len, chain_length)
    _check_length_limit(tokenizer, max_prompt_length)
    rng = random.Random(seed)
    num_chains = max(1, num_items // chain_length)
    chains = _synthetic_titles(num_items, num_chains, rng)
    titles = [t for chain in chains for t in chain]
    # Shuffle the id order so that ids carry no hint of the series.
    order = list(range(num_items))
    rng.shuffle(order)
    item_ids = {}
    for pos, title in zip(order, titles):
        item_ids[title] = pos
    catalog = ItemCatalog.from_titles(sorted(titles, key=item_ids.get))
    hi = history_len[1]
    chosen = [instructions[instruction_index(seed, u, len(instructions))] for u in range(num_users)]
    records = synthetic_users(
        chains, item_ids, num_users, history_len, rng,
        lambda u, history: build_prompt(history, category, chosen[u], template, max_history=hi),
    )
    if max_prompt_length is not None:
        rebuild = lambda u, titles: build_prompt(titles, category, chosen[u], template, hi)  # noqa: E731
        failures = _fit_prompt_length(records, rebuild, tokenizer, max_prompt_length)
        if failures:
            u = min(failures)
            raise ValueError(f"synthetic_catalog_dataset: user {u} ({len(failures)} user(s) in all): {failures[u]}")
    return catalog, Dataset.from_dict(records, features=_FEATURES)


def sft_dataset(
    dataset: Dataset, completion_template: str | None = None, item_format: str | ItemFormat = "title"
) -> Dataset:
    """The prompt-completion view for TRL's `SFTTrainer` (METHOD 6): `prompt` as is, `completion` the target written
    as `item_format` writes it (`'"{title}"\\n'` for titles, `'{title}\\n'` for SIDs; `completion_template`
    overrides it); SFTTrainer appends EOS and, for prompt-completion data, trains on the completion only.

    Example:
    ```python
    >>> from trl_rere.data import sft_dataset, synthetic_catalog_dataset
    >>> _, dataset = synthetic_catalog_dataset(num_items=16, num_users=4)
    >>> sft_dataset(dataset)[0]["completion"] == f'"{dataset[0]["target"]}"\\n'
    True
    ```
    """
    item_format = get_item_format(item_format, completion_template)
    for column in ("prompt", "target"):
        if column not in dataset.column_names:
            raise ValueError(f"sft_dataset needs a '{column}' column (has {dataset.column_names})")
    completions = [item_format.render(t) for t in dataset["target"]]
    return Dataset.from_dict({"prompt": dataset["prompt"], "completion": completions})
