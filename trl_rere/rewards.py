"""ReRe's reward functions, with TRL's reward signature `f(prompts, completions, **kwargs) -> list[float | None]`.

`ReReTrainer` passes, next to the dataset columns, per-completion fields produced by the sampler:
`beam_rank` (0-based rank of the completion among its group, -1 for a placeholder when the catalog ran out of
titles), `beam_score` (its sequence log-probability), `beam_title` (the catalog title it decodes to), `beam_item_id`
and `group_id` (which prompt group it belongs to). Your own rank-aware rewards can read them the same way.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence

import torch

from .item_format import get_item_format
from .metrics import discount


def _titles(completions, kwargs) -> list[str]:
    """The item each completion names: the sampler's `beam_title` when the trainer passes it, otherwise the
    completion text parsed with `item_format` (a name or `ItemFormat`, default `"title"`)."""
    titles = kwargs.get("beam_title")
    if titles is not None:
        return list(titles)
    item_format = get_item_format(kwargs.get("item_format") or "title")
    return [item_format.parse(c) for c in completions]


def _is_placeholder(kwargs, i: int) -> bool:
    ranks = kwargs.get("beam_rank")
    return ranks is not None and ranks[i] is not None and ranks[i] < 0


def rank_weights(group_size: int) -> list[float]:
    """`w_i = 1 / log2(i + 2)` for ranks `0..group_size-1` (the NDCG discount, `metrics.discount`)."""
    return [discount(i) for i in range(group_size)]


def rule_reward(completions, target, **kwargs) -> list[float | None]:
    """1 for the completion that names the target item, else 0 (METHOD 4, "rule").

    Example:
    ```python
    >>> from trl_rere import rule_reward
    >>> rule_reward(['"Red Ball"\\n', '"Blue Car"\\n'], target=["Blue Car", "Blue Car"])
    [0.0, 1.0]
    ```
    """
    titles = _titles(completions, kwargs)
    return [None if _is_placeholder(kwargs, i) else float(t == y) for i, (t, y) in enumerate(zip(titles, target))]


def ranking_reward(completions, target, **kwargs) -> list[float | None]:
    """ReRe's ranking penalty: in a group that contains the target, the negative at beam rank i gets `-w_i / Z`
    (`w_i = 1/log2(i+2)`, `Z = sum_j w_j` over the group's G ranks); the target and every member of a group without
    the target get 0. Groups come from `group_id` (or consecutive runs of equal prompts) and ranks from `beam_rank`.

    Example (one group of G=3 beams, the target at rank 1):
    ```python
    >>> from trl_rere import ranking_reward
    >>> rewards = ranking_reward(["a", "b", "c"], target=["b"] * 3, beam_title=["a", "b", "c"], beam_rank=[0, 1, 2],
    ...                          group_id=[0, 0, 0])
    >>> [round(r, 4) for r in rewards]  # -w_i / Z, w = (1, 0.631, 0.5), Z = 2.131
    [-0.4693, 0.0, -0.2346]
    ```
    """
    titles = _titles(completions, kwargs)
    n = len(titles)
    group_ids = kwargs.get("group_id")
    if group_ids is None:
        prompts = kwargs.get("prompts") or [None] * n
        group_ids, g = [], -1
        for i in range(n):
            g += i == 0 or prompts[i] != prompts[i - 1]
            group_ids.append(g)
    ranks = kwargs.get("beam_rank")
    members = defaultdict(list)
    for i, g in enumerate(group_ids):
        members[g].append(i)
    rewards: list[float | None] = [0.0] * n
    for idx in members.values():
        weights = rank_weights(len(idx))
        z = sum(weights)
        has_target = any(titles[i] == target[i] for i in idx)
        for pos, i in enumerate(idx):
            if _is_placeholder(kwargs, i):
                rewards[i] = None
            elif has_target and titles[i] != target[i]:
                rank = ranks[i] if ranks is not None else pos
                rewards[i] = -weights[rank] / z
    return rewards


def semantic_reward(item_embeddings: torch.Tensor, catalog) -> Callable:
    """Cosine similarity between the embeddings of the generated item and the target (the paper's "semantic"
    ablation, which invites reward hacking). `item_embeddings[item_id]` is the embedding of an item.

    Example:
    ```python
    >>> import torch
    >>> from trl_rere import ItemCatalog, semantic_reward
    >>> catalog = ItemCatalog.from_titles(["Red Ball", "Blue Car"])
    >>> reward = semantic_reward(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), catalog)
    >>> [round(r, 2) for r in reward(['"Red Ball"\\n', '"Blue Car"\\n'], target=["Blue Car"] * 2)]
    [0.6, 1.0]
    ```
    """
    emb = torch.nn.functional.normalize(torch.as_tensor(item_embeddings, dtype=torch.float32), dim=-1)

    def semantic_reward(completions, target, **kwargs) -> list[float | None]:
        titles = _titles(completions, kwargs)
        out: list[float | None] = []
        for i, (t, y) in enumerate(zip(titles, target)):
            if _is_placeholder(kwargs, i) or t not in catalog:
                out.append(None)
                continue
            a, b = emb[catalog.item_ids(t)[0]], emb[catalog.item_ids(y)[0]]
            out.append(float(a @ b))
        return out

    return semantic_reward


def collaborative_reward(scorer: Callable[[Sequence, int], float], catalog, history_column: str = "history_item_ids"):
    """Scores each generated item with any collaborative model `scorer(history, item_id) -> float` (e.g. a trained
    SASRec), the paper's "collaborative" ablation. `history` is the dataset column `history_column`.

    Example:
    ```python
    >>> from trl_rere import ItemCatalog, collaborative_reward
    >>> catalog = ItemCatalog.from_titles(["Red Ball", "Blue Car"])
    >>> reward = collaborative_reward(lambda history, item: float(item not in history), catalog)
    >>> reward(['"Red Ball"\\n', '"Blue Car"\\n'], history_item_ids=[[0], [0]])
    [0.0, 1.0]
    ```
    """

    def collaborative_reward(completions, **kwargs) -> list[float | None]:
        titles = _titles(completions, kwargs)
        histories = kwargs[history_column]
        return [
            None if _is_placeholder(kwargs, i) or t not in catalog else float(scorer(h, catalog.item_ids(t)[0]))
            for i, (t, h) in enumerate(zip(titles, histories))
        ]

    return collaborative_reward


BUILTIN_REWARDS: dict[str, Callable] = {
    "rule": rule_reward,
    "ranking": ranking_reward,
    "rule_reward": rule_reward,
    "ranking_reward": ranking_reward,
}


def check_reward_names(reward_funcs, argument: str = "reward_funcs") -> None:
    """Rejects a string that is neither a built-in reward name nor a plausible reward-model id or path.

    TRL would take any other string for a reward-model id and fail much later with an unrelated hub error."""
    if reward_funcs is None:
        return
    if not isinstance(reward_funcs, (list, tuple)):
        reward_funcs = [reward_funcs]
    for f in reward_funcs:
        if isinstance(f, str) and f not in BUILTIN_REWARDS and "/" not in f and not os.path.exists(f):
            raise ValueError(
                f"{argument}: unknown reward {f!r}: use one of {sorted(BUILTIN_REWARDS)}, a callable or a reward "
                f"model id"
            )


def resolve_reward_funcs(reward_funcs) -> list:
    """Maps built-in reward names ("rule", "ranking") to their callables; callables, reward-model ids and models pass
    through, so names and user functions can be mixed."""
    if reward_funcs is None:
        return []
    if not isinstance(reward_funcs, (list, tuple)):
        reward_funcs = [reward_funcs]
    check_reward_names(reward_funcs)
    return [BUILTIN_REWARDS.get(f, f) if isinstance(f, str) else f for f in reward_funcs]
