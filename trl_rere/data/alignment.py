"""MiniOneRec's alignment tasks: questions that tie each semantic ID to its item's text, mixed into SFT and RL.

MiniOneRec (`github.com/AkaliKong/MiniOneRec`, `data.py`, `sft.py`, `rl.py`, read at commit 81b4ba9) trains on
next-SID prediction plus tasks built from the items' texts (`index/{Category}.item.json`: title and description per
item id). The tasks, their wording and their sizes come from its code; the names are this module's, and the last two
columns say which of MiniOneRec's two mixes has the task:

| task | question -> answer | MiniOneRec class | its SFT | its RL |
|---|---|---|---|---|
| `title2sid` | an item's title -> its SID | `SidItemFeatDataset`, `RLTitle2SidDataset` | yes | yes |
| `description2sid` | an item's description -> its SID | `RLTitle2SidDataset` | | yes |
| `title_history2sid` | the titles of a user's history -> the next SID | `RLSeqTitle2SidDataset` | yes* | 10,000 rows |
| `sid2title` | an SID -> its item's title | `SidItemFeatDataset` | yes | |
| `sid_history2title` | a history of SIDs -> the next item's title | `FusionSeqRecDataset` | yes | |
| `title_history2title` | the titles of a history -> the next title | `SFTData` (D3's prompt) | yes | |

Any task can go into SFT (`alignment_sft_dataset`, `mix_sft_tasks`); a task whose answer is an item (`*2sid`) can
also go into RL (`alignment_prompts`, `mix_rl_tasks`), with the split loaders' columns so that the trie and the
rewards treat it like a next-item row. (*) `title_history2sid` is MiniOneRec's RL wording; its SFT words the task
otherwise (`TitleHistory2SidSFTDataset`), and one wording per task keeps what RL asks what SFT taught, as the
next-item prompt does (see `prompts.SID_PROMPT_TEMPLATE`). For the same reason the tasks have no Alpaca preamble (MiniOneRec's SFT
prepends one, its RL does not). `description2sid` is in the SFT mix too when asked for, although MiniOneRec's SFT
lacks it.

Typical use, on a tiny folder in MiniOneRec's layout:
```python
>>> from trl_rere.data import load_item_texts, load_sid_amazon, mix_rl_tasks, mix_sft_tasks
>>> from trl_rere.testing import write_minionerec_folder
>>> data_dir = write_minionerec_folder("tiny-sid-data")
>>> catalog, splits = load_sid_amazon(data_dir, splits=("valid",))
>>> texts = load_item_texts(data_dir, "Industrial_and_Scientific")
>>> sft = mix_sft_tasks(splits["valid"], ["sid2title", "title2sid"], catalog, texts, seed=0)
>>> len(sft) == len(splits["valid"]) + 2 * len(texts)
True
>>> rl = mix_rl_tasks(splits["valid"], ["title2sid", "title_history2sid"], catalog, texts, seed=0)
>>> all(t in catalog for t in rl["target"]), rl.column_names == splits["valid"].column_names
(True, True)
```
"""

from __future__ import annotations

import ast
import os
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, concatenate_datasets

from ..catalog import ItemCatalog
from ..item_format import ItemFormat, get_item_format
from .prompts import (
    DEFAULT_INSTRUCTIONS,
    build_prompt,
    check_length_limit,
    fit_prompt_length,
    instruction_index,
    prompt_token_counts,
)
from .readers import SPLIT_FEATURES, DataError, read_item_map
from .sft import sft_dataset
from .sids import sid_data_root

# MiniOneRec's frame around every question (its `generate_prompt`s): the same ending as the next-item prompt.
TASK_PROMPT_TEMPLATE = "### User Input: \n{question}\n\n### Response:\n"

# The questions, verbatim from MiniOneRec's data.py ("him" and the missing "?" included).
TITLE2SID_QUESTION = "Which item has the title: {title}?"
DESCRIPTION2SID_QUESTION = 'An item can be described as follows: "{description}". Which item is it describing?'
TITLE_HISTORY2SID_QUESTION = (
    "Given the title sequence of user historical interactive items: {history}, can you recommend a suitable next item "
    "for the user?"
)
SID2TITLE_QUESTION = 'What is the title of item "{sid}"?'
SID_HISTORY2TITLE_QUESTION = (
    "The user has sequentially interacted with items {history}. Can you recommend the next item for him? Tell me the "
    "title of the item"
)

LIST_SEPARATOR = re.compile(r"""['"],\s*['"]""")

# A task answered with a title: MiniOneRec writes the bare title and a newline (D3's title task keeps its quotes).
TITLE_COMPLETION_TEMPLATE = "{title}\n"

# MiniOneRec's rl.py samples 10,000 rows of the training file for RLSeqTitle2SidDataset; every other task is whole.
MINIONEREC_RL_TITLE_HISTORY_ROWS = 10_000

ITEM_TEXTS_HELP = (
    "The item texts are MiniOneRec's index/{Category}.item.json (github.com/AkaliKong/MiniOneRec, data/Amazon/index/): "
    'a JSON object mapping each item id of index/{Category}.index.json to {"title": ..., "description": ...}.'
)


# -- item texts -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemTexts:
    """The texts of a catalog's items, by item id: what the alignment tasks ask about.

    Parameters:
        titles (`dict[int, str]`):
            Every item's title.
        descriptions (`dict[int, str]`):
            The description of the items that have one (MiniOneRec's list literals are read to their first non-empty
            entry, as its `RLTitle2SidDataset` does); items without one are absent.
        category (`str` or `None`):
            The dataset key (`"Industrial_and_Scientific"`), for the task that words D3's title prompt.
        source (`str` or `None`):
            The file read, for messages.
    """

    titles: dict[int, str]
    descriptions: dict[int, str]
    category: str | None = None
    source: str | None = None

    def __len__(self) -> int:
        return len(self.titles)

    def title(self, item_id: int) -> str:
        """The title of `item_id`; an id without one is an error naming the file."""
        try:
            return self.titles[item_id]
        except KeyError:
            raise DataError(f"{self.source or 'item texts'}: item id {item_id} has no entry") from None


def _first_description(value: object) -> str | None:
    """A description field as one text: the first non-empty entry of a list (or of a Python list literal, as the
    published files hold), the string itself otherwise; `None` when there is none."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        try:
            value = ast.literal_eval(value)  # data only: literal_eval cannot call anything
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            # The published files hold a few lists with an unescaped quote inside (16 of Industrial's 3,686): split
            # at the element separators instead of handing the model the brackets and quotes.
            if value[1:2] in ("'", '"') and value[-2:-1] in ("'", '"'):
                value = LIST_SEPARATOR.split(value[2:-2])
    if isinstance(value, (list, tuple)):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def read_item_texts(
    path: str | os.PathLike, item_ids: Sequence[int] | None = None, category: str | None = None
) -> ItemTexts:
    """Reads MiniOneRec's `index/{Category}.item.json` (item id -> `{"title", "description", ...}`) into `ItemTexts`.

    Every item needs a non-empty string `title`; `description` is optional. With `item_ids` (the catalog's), the file
    must hold exactly those items. Errors (`DataError`) name the file and the item id. `category` defaults to the file
    name's part before `.item.json`.

    Example:
    ```python
    >>> from trl_rere.data import read_item_texts
    >>> from trl_rere.testing import write_minionerec_folder
    >>> texts = read_item_texts(write_minionerec_folder("tiny-sid-data") / "index/Industrial_and_Scientific.item.json")
    >>> texts.title(0), texts.category
    ('Item 0', 'Industrial_and_Scientific')
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"item texts not found: {path}. {ITEM_TEXTS_HELP}")
    raw = read_item_map(path, "their title and description")
    if not raw:
        raise DataError(f"{path}: expected a non-empty JSON object mapping item ids to texts. {ITEM_TEXTS_HELP}")
    titles: dict[int, str] = {}
    descriptions: dict[int, str] = {}
    for item, entry in raw.items():
        if not isinstance(entry, dict):
            raise DataError(f"{path}: item {item}: expected an object with a 'title', got {type(entry).__name__}")
        title = entry.get("title")
        if not isinstance(title, str) or not title.strip():
            raise DataError(f"{path}: item {item} has no title (got {title!r}); every item needs a non-empty "
                            f"'title' string")
        titles[item] = title
        description = _first_description(entry.get("description"))
        if description is not None:
            descriptions[item] = description
    if item_ids is not None:
        wanted = set(item_ids)
        missing, extra = sorted(wanted - set(titles)), sorted(set(titles) - wanted)
        if missing:
            raise DataError(f"{path}: {len(missing)} item(s) of the catalog have no entry, e.g. item id {missing[0]}")
        if extra:
            raise DataError(f"{path}: {len(extra)} item(s) are not in the catalog, e.g. item id {extra[0]}; the file "
                            f"belongs to another index")
    if category is None:
        name = Path(path).name
        category = name[: -len(".item.json")] if name.endswith(".item.json") else None
    return ItemTexts(titles, descriptions, category, path)


def load_item_texts(data_dir: str | os.PathLike, category: str, catalog: ItemCatalog | None = None) -> ItemTexts:
    """`read_item_texts` of `index/{category}.item.json` in a MiniOneRec folder (the one `load_sid_amazon` reads, or
    its `minionerec/` subfolder); with `catalog`, the file must hold exactly its items."""
    path = sid_data_root(data_dir, category) / "index" / f"{category}.item.json"
    return read_item_texts(path, sorted(catalog.item_id_to_title) if catalog is not None else None, category)


# -- the tasks --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlignmentTask:
    """One alignment task.

    Parameters:
        name (`str`):
            The task's name (`"title2sid"`).
        source (`str`):
            MiniOneRec's class it comes from.
        answer (`str`):
            `"item"` (the answer is the SID, written with the item format: RL can use it) or `"title"`.
        from_history (`bool`):
            Whether its rows come from the next-item rows (one per row) rather than from the items (one per item).
        rl_rows (`int` or `None`):
            How many rows MiniOneRec's RL samples (`None`: all); SFT takes all.
        build (`Callable`):
            `build(catalog, texts, next_item, seed) -> (records, rebuild)`: the rows in the split loaders' columns,
            `target` the answer (an SID, or a title); for a history task, `rebuild(row, kept_sids)` writes a row's
            prompt with its most recent items only (`fit_prompt_length`), `None` otherwise.
    """

    name: str
    source: str
    answer: str
    from_history: bool
    rl_rows: int | None
    build: Callable[[ItemCatalog, ItemTexts, Dataset | None, int], dict[str, list]]


def _frame(question: str) -> str:
    return TASK_PROMPT_TEMPLATE.replace("{question}", question)


def _records() -> dict[str, list]:
    return {k: [] for k in SPLIT_FEATURES}


def _add(records, seen, prompt, target, item_id, history_titles=(), history_ids=(), user_id=""):
    key = (prompt, target, user_id)
    if key in seen:  # an item task asks about each distinct (question, answer) once
        return False
    seen.add(key)
    records["prompt"].append(prompt)
    records["target"].append(target)
    records["target_item_id"].append(item_id)
    records["history_titles"].append(list(history_titles))
    records["history_item_ids"].append(list(history_ids))
    records["user_id"].append(user_id)
    return True


def _sid(catalog: ItemCatalog, item_id: int, what: str) -> str:
    try:
        return catalog.title_of(item_id)
    except KeyError:
        raise DataError(f"{what}: item id {item_id} is not in the catalog ({catalog.source})") from None


# Item tasks: one row per item, in item-id order; no user and no history (empty lists).
def _title2sid(catalog, texts, next_item, seed):
    records, seen = _records(), set()
    for item in sorted(catalog.item_id_to_title):
        _add(records, seen, _frame(TITLE2SID_QUESTION.replace("{title}", texts.title(item))), catalog.title_of(item),
             item)
    return records, None


def _description2sid(catalog, texts, next_item, seed):
    records, seen = _records(), set()
    for item in sorted(catalog.item_id_to_title):
        if item in texts.descriptions:  # an item without a description has no question to ask
            _add(records, seen, _description_prompt(texts.descriptions[item]), catalog.title_of(item), item)
    return records, None


def _description_prompt(description: str) -> str:
    return _frame(DESCRIPTION2SID_QUESTION.replace("{description}", description))


def _sid2title(catalog, texts, next_item, seed):
    records, seen = _records(), set()
    for item in sorted(catalog.item_id_to_title):
        sid = catalog.title_of(item)
        _add(records, seen, _frame(SID2TITLE_QUESTION.replace("{sid}", sid)), texts.title(item), item)
    return records, None


# History tasks: one row per next-item row, its user and history kept (history_titles stays the history's SIDs, the
# catalog's names of the items, whatever the prompt shows).
def _history_rows(next_item: Dataset | None, task: str):
    if next_item is None:
        raise ValueError(f"task {task!r} is built from the next-item rows: pass next_item (a split from "
                         f"load_sid_amazon, or sid_prefix_pairs of one)")
    for column in SPLIT_FEATURES:
        if column not in next_item.column_names:
            raise ValueError(f"task {task!r}: next_item needs a {column!r} column (has {next_item.column_names})")
    return zip(next_item["target"], next_item["target_item_id"], next_item["history_titles"],
               next_item["history_item_ids"], next_item["user_id"])


def _quoted_titles(texts: ItemTexts, ids: Sequence[int]) -> str:
    return ", ".join(f'"{texts.title(i)}"' for i in ids)


def _title_history2sid_prompt(texts, sids, ids, row, seed):
    return _frame(TITLE_HISTORY2SID_QUESTION.replace("{history}", _quoted_titles(texts, ids)))


def _sid_history2title_prompt(texts, sids, ids, row, seed):
    return _frame(SID_HISTORY2TITLE_QUESTION.replace("{history}", ", ".join(sids)))


def _title_history2title_prompt(texts, sids, ids, row, seed):
    if texts.category is None:
        raise ValueError("task 'title_history2title' words D3's prompt with the category: give ItemTexts a category")
    # MiniOneRec's SFTData draws one of D3's instructions per row; a stable hash of (seed, row) does the same
    instruction = DEFAULT_INSTRUCTIONS[instruction_index(seed, row)]
    return build_prompt([texts.title(i) for i in ids], texts.category, instruction, max_history=len(ids))


def _history_task(name: str, prompt: Callable, answer: str):
    """The builder of a history task: one row per next-item row, `prompt(texts, sids, ids, row, seed)` its prompt;
    the rebuild it returns writes row `i`'s prompt with the most recent items kept (for `fit_prompt_length`)."""

    def build(catalog, texts, next_item, seed):
        records, seen, origin = _records(), set(), []
        for row, (sid, item, sids, ids, user) in enumerate(_history_rows(next_item, name)):
            if answer == "item" and sid != _sid(catalog, item, f"next_item row {row}"):
                raise DataError(f"next_item row {row}: target {sid!r} is not the catalog's SID of item id {item}")
            target = sid if answer == "item" else texts.title(item)
            if _add(records, seen, prompt(texts, sids, ids, row, seed), target, item, sids, ids, user):
                origin.append(row)

        def rebuild(i, kept_sids):
            k = len(kept_sids)
            return prompt(texts, kept_sids, records["history_item_ids"][i][-k:], origin[i], seed)

        return records, rebuild

    return build


ALIGNMENT_TASKS: dict[str, AlignmentTask] = {
    task.name: task
    for task in (
        AlignmentTask("title2sid", "SidItemFeatDataset / RLTitle2SidDataset", "item", False, None, _title2sid),
        AlignmentTask("description2sid", "RLTitle2SidDataset", "item", False, None, _description2sid),
        AlignmentTask("title_history2sid", "RLSeqTitle2SidDataset", "item", True, MINIONEREC_RL_TITLE_HISTORY_ROWS,
                      _history_task("title_history2sid", _title_history2sid_prompt, "item")),
        AlignmentTask("sid2title", "SidItemFeatDataset", "title", False, None, _sid2title),
        AlignmentTask("sid_history2title", "FusionSeqRecDataset", "title", True, None,
                      _history_task("sid_history2title", _sid_history2title_prompt, "title")),
        AlignmentTask("title_history2title", "SFTData", "title", True, None,
                      _history_task("title_history2title", _title_history2title_prompt, "title")),
    )
}
RL_ALIGNMENT_TASKS = tuple(name for name, task in ALIGNMENT_TASKS.items() if task.answer == "item")


def get_alignment_task(name: str, rl: bool = False) -> AlignmentTask:
    """The task called `name`; with `rl`, only a task whose answer is an item (the trie can only write items)."""
    if name not in ALIGNMENT_TASKS:
        raise ValueError(f"unknown alignment task {name!r}; known: {', '.join(ALIGNMENT_TASKS)}")
    if rl and ALIGNMENT_TASKS[name].answer != "item":
        raise ValueError(f"alignment task {name!r} is answered with a title, which the item trie cannot write; RL "
                         f"takes the tasks answered with an item: {', '.join(RL_ALIGNMENT_TASKS)}")
    return ALIGNMENT_TASKS[name]


def _check_rows(num_rows: int | None, task: str) -> None:
    if num_rows is not None and (not isinstance(num_rows, int) or isinstance(num_rows, bool) or num_rows < 1):
        raise ValueError(f"num_rows for task {task!r} must be a positive integer or None (all), got {num_rows!r}")


def _fit_descriptions(records: dict[str, list], texts: ItemTexts, tokenizer, max_prompt_length: int) -> None:
    """Cuts the description of every description2sid prompt over `max_prompt_length` tokens to its longest fitting
    first words (marked with "..."), by a binary search over the number of words run for all rows in step."""
    counts = prompt_token_counts(tokenizer, records["prompt"])
    words = {i: texts.descriptions[records["target_item_id"][i]].split()
             for i, n in enumerate(counts) if n > max_prompt_length}
    bounds = {i: [0, len(w)] for i, w in words.items()}  # [fits, does not fit] bounds on the words kept
    kept: dict[int, str] = {}
    while active := [i for i, (lo, hi) in bounds.items() if hi - lo > 1]:
        mids = [(bounds[i][0] + bounds[i][1]) // 2 for i in active]
        prompts = [_description_prompt(" ".join(words[i][:k]) + " ...") for i, k in zip(active, mids)]
        for i, k, prompt, n in zip(active, mids, prompts, prompt_token_counts(tokenizer, prompts)):
            if n <= max_prompt_length:
                bounds[i][0], kept[i] = k, prompt
            else:
                bounds[i][1] = k
    for i, (k, _) in sorted(bounds.items()):
        if k == 0:
            raise DataError(f"task 'description2sid', item id {records['target_item_id'][i]}: the prompt is over "
                            f"max_prompt_length={max_prompt_length} tokens even with one word of the description; "
                            f"raise max_prompt_length")
        records["prompt"][i] = kept[i]


def _fit(task: AlignmentTask, records, rebuild, texts, tokenizer, max_prompt_length: int) -> None:
    if rebuild is not None:  # a history task: drop the oldest items, as the split loaders do
        failures = fit_prompt_length(records, rebuild, tokenizer, max_prompt_length)
        if failures:
            k = min(failures)
            raise DataError(f"task {task.name!r}, next-item row of user_id {records['user_id'][k]!r}: {failures[k]}")
    elif task.name == "description2sid":
        _fit_descriptions(records, texts, tokenizer, max_prompt_length)
    else:
        counts = prompt_token_counts(tokenizer, records["prompt"])
        over = [i for i, n in enumerate(counts) if n > max_prompt_length]
        if over:
            i = over[0]
            raise DataError(f"task {task.name!r}, item id {records['target_item_id'][i]}: the prompt has {counts[i]} "
                            f"tokens, more than max_prompt_length={max_prompt_length} ({len(over)} such prompts); "
                            f"raise max_prompt_length")


def _build(task: AlignmentTask, catalog, texts, next_item, seed, num_rows, tokenizer=None, max_prompt_length=None):
    _check_rows(num_rows, task.name)
    check_length_limit(tokenizer, max_prompt_length)
    records, rebuild = task.build(catalog, texts, next_item, seed)
    if not records["prompt"]:
        raise DataError(f"task {task.name!r} has no rows (from {texts.source or 'the item texts'})")
    if max_prompt_length is not None:
        _fit(task, records, rebuild, texts, tokenizer, max_prompt_length)
    dataset = Dataset.from_dict(records, features=SPLIT_FEATURES)
    if num_rows is not None and num_rows < len(dataset):
        # a seeded sample in the rows' own order, as pandas' sample(n, random_state=seed) picks MiniOneRec's
        dataset = dataset.select(sorted(random.Random(seed).sample(range(len(dataset)), num_rows)))
    return dataset


def alignment_prompts(
    task: str,
    catalog: ItemCatalog,
    texts: ItemTexts,
    next_item: Dataset | None = None,
    *,
    num_rows: int | None = None,
    seed: int = 0,
    tokenizer=None,
    max_prompt_length: int | None = None,
) -> Dataset:
    """RL prompts of a task answered with an item (`title2sid`, `description2sid`, `title_history2sid`), in the split
    loaders' columns (`SPLIT_FEATURES`), so `ReReTrainer` takes them as it takes next-item rows.

    `target` is the item's SID (a catalog key) and `target_item_id` its id. Item tasks have one row per distinct
    (question, SID) and no user or history (`user_id` `""`, empty lists); a title shared by items with different SIDs
    gives one row for each, both answers being right (MiniOneRec's dictionaries keep only the last such item). `title_history2sid` has one row per row of `next_item` (a split
    from `load_sid_amazon`), with its user and history (`history_titles` keeps the history's SIDs, the prompt shows
    their titles). `num_rows` keeps a seeded sample. With a `tokenizer` and `max_prompt_length`, a prompt over the
    limit is shortened as the split loaders do: a history task drops the oldest items, `description2sid` keeps the
    description's first words (and "..."); a title that does not fit, or a history whose last item alone does not,
    is a `DataError` naming the item or the user.

    Example:
    ```python
    >>> from trl_rere.data import alignment_prompts, load_item_texts, load_sid_amazon
    >>> from trl_rere.testing import write_minionerec_folder
    >>> data_dir = write_minionerec_folder("tiny-sid-data")
    >>> catalog, _ = load_sid_amazon(data_dir, splits=("valid",))
    >>> row = alignment_prompts("title2sid", catalog, load_item_texts(data_dir, "Industrial_and_Scientific"))[0]
    >>> print(row["prompt"])
    ### User Input:
    Which item has the title: Item 0?
    <BLANKLINE>
    ### Response:
    >>> row["target"] == catalog.title_of(0), row["user_id"], row["history_item_ids"]
    (True, '', [])
    ```
    """
    return _build(get_alignment_task(task, rl=True), catalog, texts, next_item, seed, num_rows, tokenizer,
                  max_prompt_length)


def alignment_sft_dataset(
    task: str,
    catalog: ItemCatalog,
    texts: ItemTexts,
    next_item: Dataset | None = None,
    *,
    item_format: str | ItemFormat = "sid",
    num_rows: int | None = None,
    seed: int = 0,
    tokenizer=None,
    max_prompt_length: int | None = None,
) -> Dataset:
    """The prompt-completion rows of any task for TRL's `SFTTrainer` (as `sft_dataset`): a task answered with an item
    completes with the item format (`"{sid}\\n"`), one answered with a title with `"{title}\\n"` (D3's title task:
    `'"{title}"\\n'`). Rows as `alignment_prompts` builds them (`num_rows`, `tokenizer` and `max_prompt_length`
    alike); `next_item` for the history tasks.

    Example:
    ```python
    >>> from trl_rere import data
    >>> from trl_rere.testing import write_minionerec_folder
    >>> folder = write_minionerec_folder("tiny-sid-data")
    >>> catalog = data.load_sid_amazon(folder, splits=("valid",))[0]
    >>> texts = data.load_item_texts(folder, "Industrial_and_Scientific", catalog)
    >>> row = data.alignment_sft_dataset("sid2title", catalog, texts)[0]
    >>> row["prompt"].splitlines()[1] == f'What is the title of item "{catalog.title_of(0)}"?', row["completion"]
    (True, 'Item 0\\n')
    ```
    """
    spec = get_alignment_task(task)
    rows = _build(spec, catalog, texts, next_item, seed, num_rows, tokenizer, max_prompt_length)
    if spec.answer == "item":
        return sft_dataset(rows, item_format=item_format)
    template = '"{title}"\n' if spec.name == "title_history2title" else TITLE_COMPLETION_TEMPLATE
    return sft_dataset(rows, template, item_format="title")


# -- mixing -----------------------------------------------------------------------------------------------------------
def _task_list(tasks: Sequence[str] | str | None) -> list[str]:
    if tasks is None:
        return []
    if isinstance(tasks, str):
        tasks = [t for t in tasks.replace(",", " ").split() if t]
    tasks = list(tasks)
    repeated = sorted({t for t in tasks if tasks.count(t) > 1})
    if repeated:
        raise ValueError(f"alignment task(s) {', '.join(repeated)} given twice")
    return tasks


def _sizes(num_rows: dict[str, int | None] | None, tasks: list[str]) -> dict[str, int | None]:
    num_rows = dict(num_rows or {})
    unknown = sorted(set(num_rows) - set(tasks))
    if unknown:
        raise ValueError(f"num_rows names task(s) {', '.join(unknown)} that are not mixed in (tasks: {tasks})")
    return num_rows


def mix_sft_tasks(
    next_item: Dataset,
    tasks: Sequence[str] | str | None,
    catalog: ItemCatalog,
    texts: ItemTexts,
    *,
    seed: int = 0,
    num_rows: dict[str, int | None] | None = None,
    item_format: str | ItemFormat = "sid",
    tokenizer=None,
    max_prompt_length: int | None = None,
) -> Dataset:
    """MiniOneRec's SFT mix: the next-item rows (`sft_dataset` of `next_item`) and every row of each task in `tasks`
    (`alignment_sft_dataset`; `num_rows={task: n}` samples a task), shuffled with `seed`. The same arguments give the
    same rows in the same order. No task: the next-item rows alone, shuffled. `tokenizer` / `max_prompt_length`
    shorten the tasks' prompts (`alignment_prompts`); load the next-item rows with the same limit."""
    tasks = _task_list(tasks)
    sizes = _sizes(num_rows, tasks)
    parts = [sft_dataset(next_item, item_format=get_item_format(item_format))]
    for name in tasks:
        parts.append(alignment_sft_dataset(name, catalog, texts, next_item, item_format=item_format,
                                           num_rows=sizes.get(name), seed=seed, tokenizer=tokenizer,
                                           max_prompt_length=max_prompt_length))
    return concatenate_datasets(parts).shuffle(seed=seed).flatten_indices()


def mix_rl_tasks(next_item: Dataset, tasks: Sequence[str] | str | None, catalog: ItemCatalog, texts: ItemTexts, *,
                 seed: int = 0, num_rows: dict[str, int | None] | None = None, tokenizer=None,
                 max_prompt_length: int | None = None) -> Dataset:
    """MiniOneRec's RL mix: the next-item rows and the prompts of each task in `tasks` (answered with an item:
    `title2sid`, `description2sid`, `title_history2sid`), shuffled with `seed`, all in the split loaders' columns.
    Each task has MiniOneRec's size unless `num_rows={task: n}` (None: all) says otherwise: `title_history2sid`
    samples 10,000 rows (all when there are fewer), the others take all. `tokenizer` / `max_prompt_length` shorten
    the tasks' prompts (`alignment_prompts`); load the next-item rows with the same limit."""
    tasks = _task_list(tasks)
    sizes = _sizes(num_rows, tasks)
    missing = [c for c in SPLIT_FEATURES if c not in next_item.column_names]
    if missing:
        raise ValueError(f"next_item needs the split loaders' columns; missing {missing}")
    parts = [next_item.select_columns(list(SPLIT_FEATURES)).cast(SPLIT_FEATURES)]
    for name in tasks:
        spec = get_alignment_task(name, rl=True)
        parts.append(_build(spec, catalog, texts, next_item, seed, sizes.get(name, spec.rl_rows), tokenizer,
                            max_prompt_length))
    return concatenate_datasets(parts).shuffle(seed=seed).flatten_indices()
