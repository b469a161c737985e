"""Tiny synthetic catalogs (titles and semantic IDs) with users that follow a learnable rule, for offline demos,
tests and the smoke runs."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from datasets import Dataset

from ..catalog import ItemCatalog
from .prompts import (
    DEFAULT_INSTRUCTIONS,
    DEFAULT_PROMPT_TEMPLATE,
    build_prompt,
    build_sid_prompt,
    check_length_limit,
    fit_prompt_length,
    instruction_index,
)
from .readers import SPLIT_FEATURES


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
    series' next item (cyclically). `render(user, history)` writes the prompt. Columns as `SPLIT_FEATURES`."""
    records: dict[str, list] = {k: [] for k in SPLIT_FEATURES}
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
    check_length_limit(tokenizer, max_prompt_length)
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
        failures = fit_prompt_length(records, rebuild, tokenizer, max_prompt_length)
        if failures:
            u = min(failures)
            raise ValueError(f"synthetic_catalog_dataset: user {u} ({len(failures)} user(s) in all): {failures[u]}")
    return catalog, Dataset.from_dict(records, features=SPLIT_FEATURES)


def synthetic_sid_dataset(
    num_items: int = 64,
    num_users: int = 256,
    history_len: tuple[int, int] = (2, 6),
    chain_length: int = 8,
    seed: int = 0,
    codebook_size: int = 32,
) -> tuple[ItemCatalog, Dataset]:
    """A tiny SID catalog and users with a learnable rule, the SID counterpart of `synthetic_catalog_dataset`.

    Items form series of about `chain_length`; item k of a series is always followed by item k+1 (cyclically) and a
    user's history is a run of one series, so the last history item decides the target. SIDs have three levels
    (`<a_N><b_N><c_N>`, codes below `codebook_size`); the items of one series share their first code, so the trie has
    shared prefixes as a quantiser's would. Columns as `load_sid_split`'s, prompts in MiniOneRec's wording.

    Example:
    ```python
    >>> from trl_rere.data import synthetic_sid_dataset
    >>> catalog, users = synthetic_sid_dataset(num_items=16, num_users=4, chain_length=8)
    >>> len(catalog), len({sid[:sid.index("><")] for sid in catalog.titles})  # two series, one first code each
    (16, 2)
    ```
    """
    check_synthetic_sizes(num_items, num_users, history_len, chain_length)
    num_chains = max(1, num_items // chain_length)
    sizes = [num_items // num_chains + (c < num_items % num_chains) for c in range(num_chains)]
    if num_chains > codebook_size or max(sizes) > codebook_size:
        raise ValueError(f"codebook_size {codebook_size} is too small for {num_chains} series of up to {max(sizes)}")
    rng = random.Random(seed)
    first = rng.sample(range(codebook_size), num_chains)
    chains = []
    for c, size in enumerate(sizes):
        second = rng.sample(range(codebook_size), size)
        chains.append([f"<a_{first[c]}><b_{b}><c_{rng.randrange(codebook_size)}>" for b in second])
    sids = [s for chain in chains for s in chain]
    order = list(range(num_items))
    rng.shuffle(order)  # ids carry no hint of the series
    item_ids = dict(zip(sids, order))
    catalog = ItemCatalog.from_titles(sorted(sids, key=item_ids.get), sorted(order))
    hi = history_len[1]
    records = synthetic_users(chains, item_ids, num_users, history_len, rng,
                              lambda u, history: build_sid_prompt(history, max_history=hi))
    return catalog, Dataset.from_dict(records, features=SPLIT_FEATURES)
