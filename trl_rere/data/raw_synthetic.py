"""Synthetic raw files in the Amazon Reviews 2018 format, for tests, benchmarks and trying `trl_rere.data.prepare`
without a download."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .raw_readers import _parse_month, month_start, require_polars

# -- synthetic raw files ----------------------------------------------------------------------------------------------
_WORDS = (  # noqa: SIM905 - a word list reads best as text
    "steel brass copper aluminum nylon rubber acrylic glass ceramic carbon round square hex flat threaded "
    "socket bolt nut washer screw rod tube sheet plate bar wire spring bearing valve fitting clamp hinge "
    "bracket drill saw blade bit glue tape filament nozzle sensor gauge meter pump filter seal gasket ring "
    "kit pack set small large heavy duty precision industrial black white red blue clear metric inch"
).split()


def write_synthetic_amazon2018(
    out_dir: str | os.PathLike,
    num_interactions: int = 10_000,
    num_items: int = 500,
    num_users: int = 2_000,
    seed: int = 0,
    first: str = "2014-01",
    last: str = "2018-12",
    category: str = "Synthetic",
) -> dict[str, Path]:
    """Writes a raw sample in the Amazon Reviews 2018 format: `out_dir/{category}.json` (reviews) and
    `out_dir/meta_{category}.json`, the names the authors' script reads. Item popularity and user activity follow
    power laws (a few items and users hold most interactions), times are uniform between the months `first` and
    `last` (to the day, so ties occur), and a few metadata records fail the title filters. Returns the two paths.

    Examples:
    ```python
    >>> paths = write_synthetic_amazon2018("raw", num_interactions=50, num_items=5, num_users=10)
    >>> sorted(p.name for p in paths.values())
    ['Synthetic.json', 'meta_Synthetic.json']
    ```
    """
    pl = require_polars()
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def power_law(n: int, exponent: float, size: int) -> np.ndarray:
        weights = 1.0 / np.arange(1, n + 1) ** exponent
        return rng.choice(n, size=size, p=weights / weights.sum())

    items = power_law(num_items, 1.0, num_interactions)
    users = power_law(num_users, 0.6, num_interactions)
    lo = month_start(*_parse_month(first, "first")) // 86400
    hi = month_start(*_parse_month(last, "last")) // 86400
    reviews = pl.DataFrame(
        {
            "reviewerID": [f"A{u:013X}" for u in (users * 2654435761 % (1 << 52)).tolist()],
            "asin": [f"B{i:09d}" for i in items.tolist()],
            "overall": rng.integers(1, 6, num_interactions).astype(np.float64),
            "unixReviewTime": rng.integers(lo, hi + 1, num_interactions) * 86400,
        }
    )
    lengths = rng.integers(2, 13, num_items)
    words = rng.integers(0, len(_WORDS), (num_items, 12))
    titles = [" ".join(_WORDS[w] for w in words[i, : lengths[i]]).title() for i in range(num_items)]
    # A few records the title filters drop: no title, a one-letter title, an HTML fragment, a 21-word title.
    titles = [
        None
        if i % 97 == 13
        else "X"
        if i % 89 == 7
        else "<span id='x'>"
        if i % 83 == 5
        else " ".join([t] * 21)
        if i % 79 == 3
        else t
        for i, t in enumerate(titles)
    ]
    paths = {"reviews": out_dir / f"{category}.json", "meta": out_dir / f"meta_{category}.json"}
    reviews.write_ndjson(paths["reviews"])
    with open(paths["meta"], "w", encoding="utf-8") as f:  # a missing title is a missing key, as in the dumps
        for i, title in enumerate(titles):
            record = {"asin": f"B{i:09d}"} | ({} if title is None else {"title": title})
            f.write(json.dumps(record) + "\n")
    return paths
