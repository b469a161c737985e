"""Prompts: the authors' title prompt, MiniOneRec's SID prompt, and one prompt-length fitter for both.

The title prompt layout, the 11 paraphrased instructions (typos included) and the category names are copied from the
public ReRe code (`github.com/sober-clever/ReRe`, `data.py`, class `D3Dataset`), itself taken from D3
(`github.com/SAI990323/DecodingMatters`), so that a model trained with this package sees exactly the authors' prompts.
The SID prompt is MiniOneRec's (`github.com/AkaliKong/MiniOneRec`, `data.py`, `SidDataset`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from .readers import DataError


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

# MiniOneRec's RL prompt (`data.py`, `SidDataset`), used here for SFT, RL and evaluation alike: its SFT prepends an
# Alpaca preamble and its evaluation words the question differently, and one wording keeps the three consistent.
SID_PROMPT_TEMPLATE = (
    "### User Input: \n"
    "The user has interacted with items {history} in chronological order. "
    "Can you predict the next possible item that the user may expect?\n"
    "\n"
    "### Response:\n"
)
SID_HISTORY_SEPARATOR = ", "
SID_MAX_HISTORY = 10  # MiniOneRec's files keep at most the last 10 items


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


def check_category_name(name: object) -> str:
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
    return render_prompt(history_titles, category_name(category), instruction, template, max_history)


def render_prompt(
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


def known_category_name(category: str) -> str:
    if category in CATEGORY_NAMES:
        return CATEGORY_NAMES[category]
    guess = category.replace("_", " ").lower()
    raise ValueError(
        f"the prompt's name for category {category!r} is not known (known: {', '.join(CATEGORY_NAMES)}); pass it as "
        f"category_name=, e.g. load_amazon(data_dir, {category!r}, category_name={guess + ' items'!r}): the prompt "
        f"reads 'The user has palyed the following {{category_name}}s before: ...'"
    )


def build_sid_prompt(
    history_sids: Sequence[str], max_history: int = SID_MAX_HISTORY, template: str = SID_PROMPT_TEMPLATE
) -> str:
    """MiniOneRec's prompt for one user: the last `max_history` history SIDs, oldest first, joined by `", "`.

    `template` holds `{history}` once and should end with the trie's prompt ending (`"### Response:\\n"`).

    Example:
    ```python
    >>> from trl_rere.data import build_sid_prompt
    >>> build_sid_prompt(["<a_1><b_2><c_3>", "<a_4><b_5><c_6>"]).splitlines()[1][:70]
    'The user has interacted with items <a_1><b_2><c_3>, <a_4><b_5><c_6> in'
    ```
    """
    if isinstance(history_sids, str):
        raise TypeError("history_sids must be a sequence of SID strings, not a single string")
    if template.count("{history}") != 1:
        raise ValueError(f"the SID prompt template must contain '{{history}}' exactly once: {template[:80]!r}")
    history = list(history_sids)[-max_history:] if max_history > 0 else []
    # replace(), not format(): a template may contain other braces
    return template.replace("{history}", SID_HISTORY_SEPARATOR.join(history))



# -- prompt length ---------------------------------------------------------------------------------------------------
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


def check_length_limit(tokenizer, max_prompt_length: int | None) -> None:
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


def fit_prompt_length(
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


def drop_rows(records: dict[str, list], rows: set[int]) -> None:
    for column, values in records.items():
        records[column] = [v for i, v in enumerate(values) if i not in rows]


def fit_split_prompts(
    records: dict[str, list],
    rows: list[tuple[int, int, dict]],
    rebuild: Callable[[int, list[str]], str],
    tokenizer,
    max_prompt_length: int,
    label: str,
    on_error: str,
    skipped: list[tuple[int, int, str]],
) -> None:
    """`fit_prompt_length` over a split read by `read_csv_rows` (`rows`: `(data row, line, parsed)`), in place: a row
    that cannot fit raises `DataError` naming `label`, its data row and its line, or with `on_error="skip"` is
    dropped and recorded in `skipped`."""
    failures = fit_prompt_length(records, rebuild, tokenizer, max_prompt_length)
    if failures and on_error == "raise":
        k = min(failures)
        raise DataError(f"{label}: data row {rows[k][0]} (line {rows[k][1]}): {failures[k]}")
    skipped.extend((rows[k][0], rows[k][1], why) for k, why in failures.items())
    skipped.sort()
    drop_rows(records, set(failures))


