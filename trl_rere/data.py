"""Prompt construction and loaders for the D3/ReRe sequential-recommendation data, plus a tiny synthetic catalog.

The prompt layout, the 11 paraphrased instructions (typos included) and the category names are copied from the public
ReRe code (`github.com/sober-clever/ReRe`, `data.py`, class `D3Dataset`), itself taken from D3
(`github.com/SAI990323/DecodingMatters`), so that a model trained with this package sees exactly the authors' prompts.
"""

from __future__ import annotations

import ast
import csv
import glob
import hashlib
import os
import random
import warnings
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset, DatasetDict, Features, Sequence as SequenceFeature, Value

from .catalog import ItemCatalog
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
    if isinstance(history_titles, str):
        raise TypeError("history_titles must be a sequence of titles, not a single string")
    name = category_name(category)
    if instruction is None:
        instruction = DEFAULT_INSTRUCTIONS[0]
    # replace() rather than format(): instructions and titles may contain other braces.
    instruction = instruction.replace("{category}", name)
    return template.format(instruction=instruction, category=name, history=format_history(history_titles, max_history))


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


def _parse_row(row: dict, catalog: ItemCatalog, max_history: int) -> dict:
    if None in row:
        raise ValueError(f"{len(row[None])} more fields than the header has")
    missing = [c for c in REQUIRED_COLUMNS if row.get(c) is None]
    if missing:
        raise ValueError(f"fewer fields than the header has (no value for {', '.join(missing)})")
    history_ids = _parse_list(row["history_item_id"], "history_item_id", int)
    history_titles = _parse_list(row["history_item_title"], "history_item_title", str)
    if len(history_ids) != len(history_titles):
        raise ValueError(
            f"history_item_id has {len(history_ids)} items but history_item_title has {len(history_titles)}"
        )
    if not history_ids:
        raise ValueError("the history is empty")
    item_id = _parse_int(row["item_id"], "item_id")
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
) -> Dataset:
    """Reads one `train|valid|test/*.csv` interaction file into a `datasets.Dataset` of prompts.

    Columns: `prompt`, `target` (the next item's title, taken from `catalog` by item id), `target_item_id`,
    `history_titles` and `history_item_ids` (the last `max_history`, oldest first) and `user_id`. Each row gets one of
    `instructions`, picked by a stable hash of `(seed, data row number)`, so prompts are reproducible whatever the order
    or process. `category` defaults to the one in the file name (`Toys_and_Games_5_...csv`).

    A malformed row (unparsable list, wrong types, history lists of unequal length, an item id missing from the
    catalog, an `item_title` that differs from the catalog's) raises `DataError` naming the file, the 1-based data row
    and the CSV line. With `on_error="skip"` such rows are dropped and one warning reports how many and which.

    Example:
    ```python
    >>> from trl_rere import ItemCatalog
    >>> from trl_rere.data import load_amazon_split
    >>> catalog = ItemCatalog.from_info_file("data/info/Industrial_and_Scientific_5_1996-10-2018-11.txt")
    >>> test = load_amazon_split("data/test/Industrial_and_Scientific_5_1996-10-2018-11.csv", catalog)
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
    path = os.fspath(csv_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"interaction file not found: {path}. {DATA_HELP}")
    name = category_name(category if category is not None else _detect_category(path))
    label = f"{path} ({split_name})" if split_name else path

    records: dict[str, list] = {k: [] for k in _FEATURES}
    skipped: list[tuple[int, int, str]] = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        if header is None:
            raise DataError(f"{label}: the file is empty (no header line)")
        absent = [c for c in REQUIRED_COLUMNS if c not in header]
        if absent:
            raise DataError(f"{label}: line 1: missing column(s) {', '.join(absent)}; the header is {header}")
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
                parsed = _parse_row(row, catalog, max_history)
            except ValueError as e:
                if on_error == "raise":
                    raise DataError(f"{label}: data row {data_row} (line {line}): {e}") from None
                skipped.append((data_row, line, str(e)))
                continue
            instruction = instructions[instruction_index(seed, data_row, len(instructions))]
            parsed["prompt"] = build_prompt(parsed["history_titles"], name, instruction, template, max_history)
            for k, v in parsed.items():
                records[k].append(v)
    if skipped:
        first = ", ".join(f"row {r} (line {ln})" for r, ln, _ in skipped[:5])
        warnings.warn(
            f"{label}: skipped {len(skipped)} malformed row(s) of {data_row}, e.g. {first}; first error: "
            f"{skipped[0][2]}",
            stacklevel=2,
        )
    if not records["prompt"]:
        raise DataError(f"{label}: no usable rows (read {data_row}, skipped {len(skipped)})")
    return Dataset.from_dict(records, features=_FEATURES)


def _find_one(roots: list[Path], pattern: str, looked: list[str]) -> Path | None:
    for root in roots:
        full = str(root / pattern)
        looked.append(full)
        matches = sorted(glob.glob(full))
        if len(matches) > 1:
            raise ValueError(f"several files match {full}: {', '.join(matches)}; keep one or pass the paths explicitly")
        if matches:
            return Path(matches[0])
    return None


def load_amazon(
    data_dir: str | os.PathLike,
    category: str = "Industrial_and_Scientific",
    splits: Sequence[str] = ("train", "valid", "test"),
    item_format: str | ItemFormat = "title",
    **kwargs,
) -> tuple[ItemCatalog, DatasetDict]:
    """Loads a dataset in the D3/ReRe layout: the catalog `info/{category}_*.txt` and one CSV per split,
    `{split}/{category}_*.csv`, found by glob under `data_dir` (or its `amazon/` / `Amazon/` subfolder).

    Other keyword arguments go to `load_amazon_split`. Raises `FileNotFoundError` listing the paths it tried when
    a file is missing. `item_format="sid"` reads MiniOneRec's semantic-ID layout instead, with SID prompts and targets
    (`trl_rere.semantic_ids.load_sid_amazon`).

    Example:
    ```python
    >>> from trl_rere.data import load_amazon
    >>> catalog, splits = load_amazon("shared/data", "Industrial_and_Scientific", splits=("valid", "test"))
    >>> splits["test"].column_names
    ['prompt', 'target', 'target_item_id', 'history_titles', 'history_item_ids', 'user_id']
    ```
    """
    if get_item_format(item_format).name == "sid":
        from .semantic_ids import load_sid_amazon  # imported here: semantic_ids builds on this module

        return load_sid_amazon(data_dir, category, splits, **kwargs)
    if isinstance(splits, str):
        splits = (splits,)
    base = Path(data_dir)
    roots = [base] + [base / sub for sub in ("amazon", "Amazon") if (base / sub).is_dir()]
    looked: list[str] = []
    info = _find_one(roots, f"info/{glob.escape(category)}_*.txt", looked)
    paths = {split: _find_one(roots, f"{glob.escape(split)}/{glob.escape(category)}_*.csv", looked) for split in splits}
    missing = ([] if info is not None else ["info"]) + [s for s, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"no {', '.join(missing)} file for category {category!r} under {base}; looked for: {', '.join(looked)}. "
            f"{DATA_HELP}"
        )
    catalog = ItemCatalog.from_info_file(info)
    kwargs.setdefault("category", category)
    datasets = {s: load_amazon_split(p, catalog, split_name=s, **kwargs) for s, p in paths.items()}
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


def synthetic_catalog_dataset(
    num_items: int = 64,
    num_users: int = 256,
    history_len: tuple[int, int] = (2, 6),
    chain_length: int = 8,
    seed: int = 0,
    category: str = "toys and games",
    template: str = DEFAULT_PROMPT_TEMPLATE,
    instructions: Sequence[str] = DEFAULT_INSTRUCTIONS,
) -> tuple[ItemCatalog, Dataset]:
    """A tiny catalog and a dataset of users with a learnable rule, for offline demos and tests.

    Items form "series" (chains of about `chain_length` titles); within a series item k is always followed by item
    k+1 (cyclically), and each user's history is a run of consecutive items of one series, so the target is determined
    by the last history title. Titles look like product names: some are prefixes of others (`"Kite"`, `"Kite Deluxe"`),
    some contain quotes or commas. The columns are those of `load_amazon_split`; split with
    `dataset.train_test_split(test_size=..., seed=...)`.

    Example:
    ```python
    >>> from trl_rere.data import synthetic_catalog_dataset
    >>> catalog, dataset = synthetic_catalog_dataset(num_items=32, num_users=64, seed=0)
    >>> splits = dataset.train_test_split(test_size=0.25, seed=0)
    >>> all(t in catalog for t in dataset["target"])
    True
    ```
    """
    if num_items < 2:
        raise ValueError(f"num_items must be at least 2, got {num_items}")
    if num_users < 1:
        raise ValueError(f"num_users must be at least 1, got {num_users}")
    lo, hi = history_len
    if not 1 <= lo <= hi:
        raise ValueError(f"history_len must be (min, max) with 1 <= min <= max, got {history_len}")
    if chain_length < 2:
        raise ValueError(f"chain_length must be at least 2, got {chain_length}")
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
    records: dict[str, list] = {k: [] for k in _FEATURES}
    for u in range(num_users):
        chain = chains[rng.randrange(len(chains))]
        start = rng.randrange(len(chain))
        h = rng.randint(lo, hi)
        history = [chain[(start + j) % len(chain)] for j in range(h)]
        target = chain[(start + h) % len(chain)]
        instruction = instructions[instruction_index(seed, u, len(instructions))]
        records["prompt"].append(build_prompt(history, category, instruction, template, max_history=hi))
        records["target"].append(target)
        records["target_item_id"].append(item_ids[target])
        records["history_titles"].append(history)
        records["history_item_ids"].append([item_ids[t] for t in history])
        records["user_id"].append(f"user_{u:05d}")
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
