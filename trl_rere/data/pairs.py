"""Training pairs from interaction sequences: every (history prefix -> next item) pair of each row."""

from __future__ import annotations

from datasets import Dataset

from .prompts import SID_MAX_HISTORY, SID_PROMPT_TEMPLATE, build_sid_prompt
from .readers import SPLIT_FEATURES


def sid_prefix_pairs(
    dataset: Dataset, max_history: int = SID_MAX_HISTORY, template: str = SID_PROMPT_TEMPLATE
) -> Dataset:
    """Every (history prefix -> next item) pair of each row's sequence (its history, then its target), in order, each
    distinct (user, history, target) pair once.

    MiniOneRec's (and D3's) training split is built this way, by sliding over each user's sequence. Its valid and test
    files already hold several overlapping rows per user (one per event, each with the window before it), so the same
    pair arises from several rows; it is kept once, or a user's early events would weigh as much more as it has rows. Built from the
    valid split, every event used precedes the same user's test target, so nothing of the test split leaks in. Load
    the split with `max_history` at least the files' 10, so that the sequences are whole.

    Example:
    ```python
    >>> from trl_rere.data import sid_prefix_pairs, synthetic_sid_dataset
    >>> _, users = synthetic_sid_dataset(num_items=16, num_users=2, history_len=(3, 3))
    >>> pairs = sid_prefix_pairs(users)  # each user's 3 history items + target: 3 pairs
    >>> len(pairs), [len(h) for h in pairs["history_titles"][:3]]
    (6, [1, 2, 3])
    ```
    """
    rows: dict[str, list] = {k: [] for k in SPLIT_FEATURES}
    seen = set()
    for ex in dataset:
        sids = list(ex["history_titles"]) + [ex["target"]]
        ids = list(ex["history_item_ids"]) + [ex["target_item_id"]]
        for k in range(1, len(ids)):
            start = max(0, k - max_history)
            key = (ex["user_id"], tuple(ids[start:k + 1]))
            if key in seen:
                continue
            seen.add(key)
            rows["prompt"].append(build_sid_prompt(sids[start:k], max_history, template))
            rows["target"].append(sids[k])
            rows["target_item_id"].append(ids[k])
            rows["history_titles"].append(sids[start:k])
            rows["history_item_ids"].append(ids[start:k])
            rows["user_id"].append(ex["user_id"])
    return Dataset.from_dict(rows, features=SPLIT_FEATURES)
