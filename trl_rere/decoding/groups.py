"""Drawing one group of G catalog items per prompt: ReRe's beam search and the sampling ablations.

`draw_groups` is the one entry point the trainer uses: every strategy returns, per prompt, G `Beam` records (the
item, its completion tokens, its sequence log-probability and its rank in the group). Beam groups come from the same
core as the evaluation (`search.beam_search`); sampled groups from the backend's `sample`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from ..trie import ItemTrie
from .backend import INVALID_SCORE, Completions, DecodingBackend
from .hf_generate import HFGenerate
from .options import DecodingOptions
from .search import Beam, RankedBeams, beam_search, eval_mode
from .tokens import cut_after_eos


def _placeholder(beam: Beam) -> Beam:
    # rank -1: the built-in rewards leave it unscored (a catalog with fewer reachable items than G)
    return Beam(beam.title, beam.item_ids, beam.token_ids, beam.score, -1, beam.title_index)


def _ranked(members: list[Beam]) -> list[Beam]:
    """Orders a group best-first by score (NaN last) and numbers the ranks."""
    members = sorted(members, key=lambda m: -m.score if not math.isnan(m.score) else math.inf)
    for rank, m in enumerate(members):
        m.rank = rank
    return members


def beam_groups(ranked: Sequence[RankedBeams], group_size: int) -> list[list[Beam]]:
    """`beam_search` results -> groups of `group_size` distinct items in beam order. A group short of valid titles is
    padded with placeholder copies of its last beam (rank -1), which the built-in rewards leave unscored."""
    groups = []
    for beams in ranked:
        members = list(beams)
        if not members:
            raise RuntimeError("constrained beam search returned no valid title for a prompt; is the trie empty?")
        while len(members) < group_size:
            members.append(_placeholder(members[-1]))
        groups.append(members)
    return groups


def sample_groups(
    trie: ItemTrie, samples: Completions, group_size: int, dynamic: bool, targets: Sequence[int]
) -> list[list[Beam]]:
    """Sampled rows -> groups. Plain sampling keeps the first `group_size` samples (duplicates and all). Dynamic
    sampling keeps the target if it was drawn, then the most frequent distinct negatives, and fills any remaining
    slots with the leftover samples in draw order."""
    per_prompt = samples.rows_per_prompt
    rows, scores = samples.completion_ids.tolist(), samples.scores.tolist()
    groups = []
    for p in range(samples.num_prompts):
        drawn = []
        for r in range(p * per_prompt, (p + 1) * per_prompt):
            ids = cut_after_eos(rows[r], trie.eos_token_id)
            title_index = trie.lookup(ids)
            if title_index >= 0 and scores[r] > INVALID_SCORE:
                drawn.append(Beam.of_item(trie, ids, title_index, scores[r], 0))
        if not drawn:
            raise RuntimeError("trie-constrained sampling produced no valid title; is the trie empty?")
        if dynamic:
            counts = Counter(m.title_index for m in drawn)
            first = {}
            for m in drawn:
                first.setdefault(m.title_index, m)
            order = sorted(first, key=lambda t: (t != targets[p], -counts[t], -first[t].score))
            kept = [first[t] for t in order[:group_size]]
            chosen = {id(m) for m in kept}
            kept += [m for m in drawn if id(m) not in chosen][: group_size - len(kept)]
        else:
            kept = drawn[:group_size]
        kept = _ranked(kept)
        while len(kept) < group_size:  # only if rows were invalid, which the trie prevents
            kept.append(_placeholder(kept[-1]))
        groups.append(kept)
    return groups


def insert_ground_truth(groups: list[list[Beam]], trie: ItemTrie, targets: Sequence[int]) -> None:
    """`add_gt`: the last member of each group that lacks the target becomes the target (score unknown: NaN)."""
    for members, target in zip(groups, targets):
        if target < 0 or any(m.title_index == target for m in members):
            continue
        members[-1] = Beam.of_item(trie, trie.title_token_ids(target), target, float("nan"), len(members) - 1)


@torch.no_grad()
def draw_groups(
    model,
    prompt_ids: Sequence[Sequence[int]],
    trie: ItemTrie,
    options: DecodingOptions | str = "beam",
    group_size: int = 16,
    targets: Sequence[int] | None = None,
    *,
    add_gt: bool = False,
    backend: DecodingBackend | None = None,
) -> list[list[Beam]]:
    """Draws one group of `group_size` catalog items for each prompt, with one decoding call for the batch.

    Args:
        model: a causal LM (unwrapped: under ZeRO-3 its parameters gathered or fetched by `generate`).
        prompt_ids: one token-id list per unique prompt (`tokenize_prompts`, checked).
        trie: the catalog trie the completions are constrained to.
        options: the `DecodingOptions` (or just its `sampling_strategy`): `"beam"` (ReRe: one beam search of
            `beam_width` beams, the best `group_size` distinct items), `"sample"` (temperature sampling) or
            `"dynamic"` (draw `dynamic_sampling_factor * group_size` samples, keep the target and the most frequent
            distinct negatives).
        group_size: G, the completions per prompt.
        targets: the target's title index per prompt (-1: not in the catalog); needed by `"dynamic"` and `add_gt`.
        add_gt: replace the last member of each group that lacks the target with the target (score NaN).
        backend: the `DecodingBackend` (default `HFGenerate`).

    Returns:
        Per prompt, `group_size` `Beam`s best first; `rank` is the position in the group, -1 for a placeholder that
        fills a group when the catalog has fewer reachable items than G.

    The model runs in eval mode (no dropout: beams are ranked by the deterministic policy) and gets its mode back.

    Example:
    ```python
    >>> from trl_rere import ItemCatalog, ItemTrie
    >>> from trl_rere.decoding import draw_groups, tokenize_prompts
    >>> from trl_rere.testing import tiny_causal_lm, train_tokenizer
    >>> catalog = ItemCatalog.from_titles(["Red Ball", "Blue Car", "Green Kite", "Pink Doll"])
    >>> tokenizer = train_tokenizer(list(catalog.titles))
    >>> trie = ItemTrie.from_catalog(catalog, tokenizer)
    >>> prompt_ids = tokenize_prompts(tokenizer, ['Last: "Red Ball"\\n### Response:\\n'], trie)
    >>> (group,) = draw_groups(tiny_causal_lm(tokenizer), prompt_ids, trie, "beam", group_size=3)
    >>> [beam.rank for beam in group], len({beam.title for beam in group}), all(b.title in catalog for b in group)
    ([0, 1, 2], 3, True)
    ```
    """
    if isinstance(options, str):
        options = DecodingOptions(sampling_strategy=options)
    strategy = options.sampling_strategy
    num_prompts = len(prompt_ids)
    if targets is None:
        if strategy == "dynamic" or add_gt:
            raise ValueError(f"targets are needed for strategy={strategy!r} / add_gt={add_gt}")
        targets = [-1] * num_prompts
    elif len(targets) != num_prompts:
        raise ValueError(f"got {len(targets)} targets for {num_prompts} prompts")
    backend = backend or HFGenerate()
    with eval_mode(model):
        if strategy == "beam":
            ranked = beam_search(model, prompt_ids, trie, options.num_beams(group_size), group_size, options, backend)
        else:
            samples = backend.sample(model, prompt_ids, trie, options.num_samples(group_size), options)
    if strategy == "beam":
        groups = beam_groups(ranked, group_size)
    else:
        groups = sample_groups(trie, samples, group_size, strategy == "dynamic", targets)
    if add_gt:
        insert_ground_truth(groups, trie, targets)
    return groups
