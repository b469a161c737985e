"""Drawing one group of G catalog items per prompt: ReRe's beam search and the sampling ablations.

`draw_groups` is the one entry point: every strategy returns, per prompt, G `Beam` records (the item, its completion
tokens, its sequence log-probability and its rank in the group).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .constrained import INVALID_SCORE, Beam, TrieLogitsProcessor, collect_beams, generate_beams, left_pad
from .trie import ItemTrie


SAMPLING_STRATEGIES = ("beam", "sample", "dynamic")


def _member(trie: ItemTrie, token_ids: list[int], title_index: int, score: float, rank: int) -> Beam:
    title = trie.title(title_index)
    item_ids = trie.catalog.item_ids(title) if trie.catalog is not None else []
    return Beam(title, list(item_ids), token_ids, score, rank, title_index)


def _placeholder(beam: Beam) -> Beam:
    # rank -1: the built-in rewards leave it unscored (a catalog with fewer reachable items than G)
    return Beam(beam.title, beam.item_ids, beam.token_ids, beam.score, -1, beam.title_index)


class SequenceLogProbRecorder(LogitsProcessor):
    """Accumulates each row's full-vocabulary log-probability of the tokens it goes on to sample.

    It must come before any masking processor: it reads the model's own distribution, so sampled completions can be
    ranked by the same quantity beam search ranks by. The token drawn at a step is only visible at the next call (or
    in the final sequences), so the previous step's log-probs are kept for one step.
    """

    def __init__(self, eos_token_id: int | None):
        self.eos_token_id = eos_token_id
        self._prev: torch.Tensor | None = None
        self.total: torch.Tensor | None = None
        self._done: torch.Tensor | None = None

    def _add(self, last: torch.Tensor) -> None:
        gained = self._prev.gather(1, last.unsqueeze(1)).squeeze(1)
        self.total += torch.where(self._done, torch.zeros_like(gained), gained)
        if self.eos_token_id is not None:
            self._done |= last == self.eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._prev is None:
            self.total = torch.zeros(scores.shape[0], device=scores.device)
            self._done = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
        else:
            self._add(input_ids[:, -1])
        self._prev = scores.float().log_softmax(-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        if self._prev is not None:
            self._add(sequences[:, -1])
            self._prev = None
        return self.total


@torch.no_grad()
def sample_from_trie(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: ItemTrie,
    num_samples: int,
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Temperature sampling constrained to the trie; `num_samples` rows per prompt with their sequence log-probs."""
    recorder = SequenceLogProbRecorder(trie.eos_token_id)
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        do_sample=True,
        num_beams=1,
        num_return_sequences=num_samples,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k or None,
        max_new_tokens=trie.max_length,
        eos_token_id=trie.eos_token_id,
        pad_token_id=pad_token_id,
        logits_processor=LogitsProcessorList([recorder, TrieLogitsProcessor(trie, num_beams=1)]),
        return_dict_in_generate=True,
    )
    scores = recorder.finish(out.sequences)
    return out.sequences[:, input_ids.shape[1] :], scores


def _ranked(members: list[Beam]) -> list[Beam]:
    """Orders a group best-first by score (NaN last) and numbers the ranks."""
    members = sorted(members, key=lambda m: -m.score if not math.isnan(m.score) else math.inf)
    for rank, m in enumerate(members):
        m.rank = rank
    return members


def _cut(ids: list[int], eos: int | None) -> list[int]:
    return ids[: ids.index(eos) + 1] if eos is not None and eos in ids else ids


def beam_groups(trie: ItemTrie, completion_ids, scores, num_prompts: int, group_size: int) -> list[list[Beam]]:
    """Beam search output -> groups of `group_size` distinct items in beam order. A group short of valid titles is
    padded with placeholder copies of its last beam (rank -1), which the built-in rewards leave unscored."""
    groups = []
    for ranked in collect_beams(trie, completion_ids, scores, num_prompts, group_size):
        members = list(ranked)
        if not members:
            raise RuntimeError("constrained beam search returned no valid title for a prompt; is the trie empty?")
        while len(members) < group_size:
            members.append(_placeholder(members[-1]))
        groups.append(members)
    return groups


def sample_groups(
    trie: ItemTrie,
    completion_ids: torch.Tensor,
    scores: torch.Tensor,
    num_prompts: int,
    group_size: int,
    dynamic: bool,
    targets: Sequence[int],
) -> list[list[Beam]]:
    """Sampled rows -> groups. Plain sampling keeps the first `group_size` samples (duplicates and all). Dynamic
    sampling keeps the target if it was drawn, then the most frequent distinct negatives, and fills any remaining
    slots with the leftover samples in draw order."""
    per_prompt = completion_ids.shape[0] // num_prompts
    rows, scores = completion_ids.tolist(), scores.tolist()
    groups = []
    for p in range(num_prompts):
        drawn = []
        for r in range(p * per_prompt, (p + 1) * per_prompt):
            ids = _cut(rows[r], trie.eos_token_id)
            title_index = trie.lookup(ids)
            if title_index >= 0 and scores[r] > INVALID_SCORE:
                drawn.append(_member(trie, ids, title_index, scores[r], 0))
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
        members[-1] = _member(trie, trie.title_token_ids(target), target, float("nan"), len(members) - 1)


@torch.no_grad()
def draw_groups(
    model,
    prompt_ids: Sequence[Sequence[int]],
    trie: ItemTrie,
    strategy: str = "beam",
    group_size: int = 16,
    targets: Sequence[int] | None = None,
    *,
    pad_token_id: int | None = None,
    beam_width: int | None = None,
    dynamic_sampling_factor: float = 1.5,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    add_gt: bool = False,
    shared_prompt_cache: bool = False,
) -> list[list[Beam]]:
    """Draws one group of `group_size` catalog items for each prompt, with one `generate` call for the batch.

    Args:
        model: a causal LM (unwrapped: under ZeRO-3 its parameters gathered or fetched by `generate`).
        prompt_ids: one token-id list per unique prompt.
        trie: the catalog trie the completions are constrained to.
        strategy: `"beam"` (ReRe: one beam search of `beam_width` beams, the best `group_size` distinct items),
            `"sample"` (temperature sampling) or `"dynamic"` (draw `dynamic_sampling_factor * group_size` samples,
            keep the target and the most frequent distinct negatives).
        group_size: G, the completions per prompt.
        targets: the target's title index per prompt (-1: not in the catalog); needed by `"dynamic"` and `add_gt`.
        add_gt: replace the last member of each group that lacks the target with the target (score NaN).

    Returns:
        Per prompt, `group_size` `Beam`s best first; `rank` is the position in the group, -1 for a placeholder that
        fills a group when the catalog has fewer reachable items than G.

    The model runs in eval mode (no dropout: beams are ranked by the deterministic policy) and gets its mode back.

    Example:
    ```python
    >>> from trl_rere import ItemCatalog, ItemTrie, draw_groups
    >>> from trl_rere.constrained import tokenize_prompts
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
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"strategy must be one of {SAMPLING_STRATEGIES}, got {strategy!r}")
    num_prompts = len(prompt_ids)
    if targets is None:
        if strategy == "dynamic" or add_gt:
            raise ValueError(f"targets are needed for strategy={strategy!r} / add_gt={add_gt}")
        targets = [-1] * num_prompts
    elif len(targets) != num_prompts:
        raise ValueError(f"got {len(targets)} targets for {num_prompts} prompts")
    pad_id = pad_token_id if pad_token_id is not None else trie.eos_token_id
    device = next(model.parameters()).device
    input_ids, attention_mask = left_pad([list(p) for p in prompt_ids], pad_id, device)
    was_training = model.training
    model.eval()
    try:
        if strategy == "beam":
            completion_ids, scores = generate_beams(
                model,
                input_ids,
                attention_mask,
                trie,
                num_beams=max(beam_width or group_size, group_size),
                pad_token_id=pad_id,
                shared_prompt_cache=shared_prompt_cache,
            )
        else:
            draws = group_size if strategy == "sample" else math.ceil(dynamic_sampling_factor * group_size)
            completion_ids, scores = sample_from_trie(
                model,
                input_ids,
                attention_mask,
                trie,
                num_samples=draws,
                pad_token_id=pad_id,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
            )
    finally:
        model.train(was_training)
    if strategy == "beam":
        groups = beam_groups(trie, completion_ids, scores, num_prompts, group_size)
    else:
        groups = sample_groups(trie, completion_ids, scores, num_prompts, group_size, strategy == "dynamic", targets)
    if add_gt:
        insert_ground_truth(groups, trie, targets)
    return groups
