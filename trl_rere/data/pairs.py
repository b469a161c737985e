"""Training pairs from interaction sequences: every (history prefix -> next item) pair of each row."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from datasets import Dataset

from .prompts import (
    DEFAULT_INSTRUCTIONS,
    DEFAULT_PROMPT_TEMPLATE,
    MAX_HISTORY,
    SID_MAX_HISTORY,
    SID_PROMPT_TEMPLATE,
    build_sid_prompt,
    category_name,
    instruction_index,
    render_prompt,
)
from .readers import SPLIT_FEATURES


def prefix_pairs(
    dataset: Dataset, render: Callable[[list[str], int], str], max_history: int, unique: bool = True
) -> Dataset:
    """Every (history prefix -> next item) pair of each row's sequence (its history, then its target), in order, with
    the prompt `render(history, number)` writes for the last `max_history` items before the target.

    `number` counts the pairs from 1 in the order they are made, repeats included, so a prompt that depends on it (an
    instruction picked by hash) does not change with `unique`. With `unique`, each distinct (user, history, target)
    pair is kept once: the D3 and MiniOneRec files hold several overlapping rows per user (one per event, each with the
    window before it), so the same pair arises from several rows, and keeping them all weighs a user's early events by
    how many rows the user has. Built from the valid split, every event used precedes the same user's test target, so
    nothing of the test split leaks in. Load the split with `max_history` at least the files' 10, so that the
    sequences are whole.

    Example:
    ```python
    >>> from trl_rere.data import prefix_pairs, synthetic_sid_dataset
    >>> _, users = synthetic_sid_dataset(num_items=16, num_users=1, history_len=(2, 2))
    >>> pairs = prefix_pairs(users, lambda history, number: f"{number}: {len(history)} items", max_history=10)
    >>> list(pairs["prompt"])
    ['1: 1 items', '2: 2 items']
    ```
    """
    rows: dict[str, list] = {k: [] for k in SPLIT_FEATURES}
    seen = set()
    number = 0
    for ex in dataset:
        items = list(ex["history_titles"]) + [ex["target"]]
        ids = list(ex["history_item_ids"]) + [ex["target_item_id"]]
        for k in range(1, len(ids)):
            number += 1
            start = max(0, k - max_history)
            if unique:
                key = (ex["user_id"], tuple(ids[start : k + 1]))
                if key in seen:
                    continue
                seen.add(key)
            rows["prompt"].append(render(items[start:k], number))
            rows["target"].append(items[k])
            rows["target_item_id"].append(ids[k])
            rows["history_titles"].append(items[start:k])
            rows["history_item_ids"].append(ids[start:k])
            rows["user_id"].append(ex["user_id"])
    return Dataset.from_dict(rows, features=SPLIT_FEATURES)


def sid_prefix_pairs(
    dataset: Dataset, max_history: int = SID_MAX_HISTORY, template: str = SID_PROMPT_TEMPLATE
) -> Dataset:
    """`prefix_pairs` with MiniOneRec's SID prompt, each distinct (user, history, target) pair once: MiniOneRec's (and
    D3's) training split is built this way, by sliding over each user's sequence.

    Example:
    ```python
    >>> from trl_rere.data import sid_prefix_pairs, synthetic_sid_dataset
    >>> _, users = synthetic_sid_dataset(num_items=16, num_users=2, history_len=(3, 3))
    >>> pairs = sid_prefix_pairs(users)  # each user's 3 history items + target: 3 pairs
    >>> len(pairs), [len(h) for h in pairs["history_titles"][:3]]
    (6, [1, 2, 3])
    ```
    """
    return prefix_pairs(dataset, lambda history, _: build_sid_prompt(history, max_history, template), max_history)


def title_prefix_pairs(
    dataset: Dataset,
    category: str,
    max_history: int = MAX_HISTORY,
    template: str = DEFAULT_PROMPT_TEMPLATE,
    instructions: Sequence[str] = DEFAULT_INSTRUCTIONS,
    seed: int = 42,
    unique: bool = True,
) -> Dataset:
    """`prefix_pairs` with the authors' title prompt (`build_prompt`): pair `number` gets one of `instructions`, picked
    by a stable hash of `(seed, number)`. `category` is a dataset key or a noun, as in `build_prompt`.

    Example:
    ```python
    >>> from trl_rere.data import synthetic_catalog_dataset, title_prefix_pairs
    >>> _, users = synthetic_catalog_dataset(num_items=16, num_users=2)
    >>> pairs = title_prefix_pairs(users, "Toys_and_Games", max_history=2)
    >>> len(pairs) == sum(len(h) for h in users["history_titles"]), pairs["prompt"][0].endswith("### Response:\\n")
    (True, True)
    ```
    """
    noun = category_name(category)

    def render(history: list[str], number: int) -> str:
        instruction = instructions[instruction_index(seed, number, len(instructions))]
        return render_prompt(history, noun, instruction, template, max_history)

    return prefix_pairs(dataset, render, max_history, unique=unique)
