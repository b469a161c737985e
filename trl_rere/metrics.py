"""Ranking metrics, shared by the trainer's group statistics and the evaluation: HR@K and NDCG@K with one discount."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


DEFAULT_KS = (1, 3, 5, 10, 20, 50)


def discount(rank: int) -> float:
    """The NDCG discount of a 0-based rank, `1 / log2(rank + 2)`: 1 for the top item. ReRe's ranking reward weighs
    a group's ranks with it too (`rewards.rank_weights`).

    Example:
    ```python
    >>> from trl_rere.metrics import discount
    >>> discount(0), discount(2)
    (1.0, 0.5)
    ```
    """
    return 1.0 / math.log2(rank + 2)


def ranking_metrics(ranks: Iterable[int | None], ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """HR@K and NDCG@K from the 0-based rank of each user's target (`None` or a negative rank: not retrieved).

    `HR@K = mean(rank < K)` and `NDCG@K = mean(discount(rank) if rank < K else 0)`: with one relevant item per
    user the ideal DCG is 1.

    Example:
    ```python
    >>> from trl_rere.metrics import ranking_metrics
    >>> ranking_metrics([0, 2, None], ks=(1, 3))
    {'HR@1': 0.3333333333333333, 'NDCG@1': 0.3333333333333333, 'HR@3': 0.6666666666666666, 'NDCG@3': 0.5}
    ```
    """
    ranks = list(ranks)
    if not ranks:
        raise ValueError("ranking_metrics needs at least one rank")
    ks = list(ks)
    for k in ks:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"every K must be a positive integer, got {k!r} in ks={ks}")
    hits: list[int] = []
    for i, r in enumerate(ranks):
        if r is None or r < 0:
            hits.append(-1)
        elif isinstance(r, bool) or int(r) != r:
            raise ValueError(f"rank {i} is {r!r}; ranks are 0-based integers, or None / -1 for a miss")
        else:
            hits.append(int(r))
    n = len(hits)
    metrics: dict[str, float] = {}
    for k in ks:
        found = [r for r in hits if 0 <= r < k]
        metrics[f"HR@{k}"] = len(found) / n
        metrics[f"NDCG@{k}"] = sum(discount(r) for r in found) / n
    return metrics


def format_metrics_table(metrics: dict[str, float], title: str | None = None) -> str:
    """The HR@K / NDCG@K metrics as a markdown table, one column per K."""
    ks = sorted({int(key.split("@")[1]) for key in metrics if key.startswith(("HR@", "NDCG@"))})
    lines = [f"### {title}", ""] if title else []
    lines.append("| metric | " + " | ".join(f"@{k}" for k in ks) + " |")
    lines.append("|---|" + "---:|" * len(ks))
    for name in ("HR", "NDCG"):
        lines.append(f"| {name} | " + " | ".join(f"{metrics[f'{name}@{k}']:.4f}" for k in ks) + " |")
    return "\n".join(lines)
