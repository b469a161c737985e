"""The one beam-search core, for training and evaluation alike: tokenized prompts in, `RankedBeams` out.

`beam_search` runs a backend's search (`HFGenerate` unless told otherwise) and turns its rows into distinct items,
best first (`collect_beams`). It neither tokenizes nor switches the model's mode: callers tokenize and check their
prompts once (`tokenize_prompts`; the trainer caches them) and hold the model in eval mode around all their batches
(`eval_mode`). `constrained_beam_search` is that path for prompts given as text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..trie import ItemTrie
from .backend import INVALID_SCORE, DecodingBackend
from .hf_generate import HFGenerate
from .options import DecodingOptions
from .tokens import cut_after_eos, tokenize_prompts


@dataclass
class Beam:
    """One item proposed by the beam search."""

    title: str
    item_ids: list[int]
    token_ids: list[int]
    score: float  # sum of the full-vocabulary token log-probs (length_penalty 0)
    rank: int  # 0-based position among the prompt's beams, best first
    title_index: int = -1

    @classmethod
    def of_item(cls, trie: ItemTrie, token_ids: list[int], title_index: int, score: float, rank: int) -> Beam:
        """The record of the trie's item `title_index`, with its catalog item id(s) when the trie has a catalog."""
        title = trie.title(title_index)
        item_ids = trie.catalog.item_ids(title) if trie.catalog is not None else []
        return cls(title, list(item_ids), token_ids, score, rank, title_index)


@dataclass
class RankedBeams:
    """The beams of one prompt, best first. `complete` is False when fewer valid titles than requested came back
    (a catalog with fewer reachable titles than beams); the missing beams are never filled with garbage."""

    beams: list[Beam] = field(default_factory=list)
    requested: int = 0

    @property
    def complete(self) -> bool:
        return len(self.beams) >= self.requested

    @property
    def titles(self) -> list[str]:
        return [b.title for b in self.beams]

    def __iter__(self) -> Iterator[Beam]:
        return iter(self.beams)

    def __len__(self) -> int:
        return len(self.beams)

    def __getitem__(self, i):
        return self.beams[i]


def collect_beams(
    trie: ItemTrie, completion_ids: torch.Tensor, scores: torch.Tensor, num_prompts: int, keep: int
) -> list[RankedBeams]:
    """Per prompt, the first `keep` rows of a backend's beam search (`Completions`' fields) that are valid, distinct
    items, as `RankedBeams`: invalid rows and repeats are dropped, never filled in."""
    per_prompt = completion_ids.shape[0] // num_prompts
    rows = completion_ids.tolist()
    scores = scores.tolist()
    result = []
    for p in range(num_prompts):
        group = RankedBeams(requested=keep)
        seen = set()
        for r in range(p * per_prompt, (p + 1) * per_prompt):
            if len(group.beams) == keep:
                break
            score = scores[r]
            if not score > INVALID_SCORE:  # also rejects NaN
                continue
            ids = cut_after_eos(rows[r], trie.eos_token_id)
            title_index = trie.lookup(ids)
            if title_index < 0 or title_index in seen:
                continue
            seen.add(title_index)
            group.beams.append(Beam.of_item(trie, ids, title_index, score, len(group.beams)))
        result.append(group)
    return result


@contextmanager
def eval_mode(model):
    """Holds `model` in eval mode (no dropout: beams are ranked by the deterministic policy), then restores its mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def beam_search(
    model,
    prompt_ids: Sequence[Sequence[int]],
    trie: ItemTrie,
    num_beams: int,
    keep: int | None = None,
    options: DecodingOptions | None = None,
    backend: DecodingBackend | None = None,
) -> list[RankedBeams]:
    """For each tokenized prompt, the best `keep` (default `num_beams`) distinct items of a `num_beams`-beam search.

    Prompts must come from `tokenize_prompts` (checked against the trie); the model runs in the mode it is in (wrap
    the calls in `eval_mode`). `options` carries padding and the cache choice; `backend` defaults to `HFGenerate`.

    Example:
    ```python
    >>> from trl_rere.testing import tiny_recommender
    >>> from trl_rere.decoding import beam_search, eval_mode, tokenize_prompts
    >>> catalog, tokenizer, model, trie = tiny_recommender()  # 5 titles, a random tiny Qwen2, the title trie
    >>> prompt_ids = tokenize_prompts(tokenizer, ['"Red Ball"\\n### Response:\\n'], trie)
    >>> with eval_mode(model):
    ...     (beams,) = beam_search(model, prompt_ids, trie, num_beams=4, keep=3)
    >>> [b.rank for b in beams], all(t in catalog for t in beams.titles)
    ([0, 1, 2], True)
    ```
    """
    keep = keep or num_beams
    if keep > num_beams:
        raise ValueError(f"keep (num_return_sequences) is {keep}, more than num_beams ({num_beams})")
    backend = backend or HFGenerate()
    out = backend.beam_search(model, prompt_ids, trie, num_beams, options or DecodingOptions())
    return collect_beams(trie, out.completion_ids, out.scores, out.num_prompts, keep)


def constrained_beam_search(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    trie: ItemTrie,
    num_beams: int,
    num_return_sequences: int | None = None,
    batch_size: int | None = None,
    shared_prompt_cache: bool = False,
) -> list[RankedBeams]:
    """Beam search that can only produce catalog titles.

    For each prompt returns up to `num_return_sequences` (default `num_beams`) distinct titles, best first, each
    with its item id(s), completion token ids and score (the sum of the token log-probs under the full-vocabulary
    distribution, `length_penalty=0`). HF beam search is approximate: searching with `num_beams` larger than
    `num_return_sequences` finds higher-probability titles more reliably. A prompt for which fewer valid titles came
    back has `complete == False`. `batch_size` prompts go into each `generate` call (all of them by default);
    `shared_prompt_cache` is `DecodingOptions`'. The prompts are tokenized and checked once, the model held in eval
    mode once, and each batch goes through `beam_search`.

    Example:
    ```python
    >>> from trl_rere.testing import tiny_recommender
    >>> catalog, tokenizer, model, trie = tiny_recommender()  # 5 titles, a random tiny Qwen2, the title trie
    >>> from trl_rere import constrained_beam_search
    >>> (beams,) = constrained_beam_search(model, tokenizer, ['"Red Ball"\\n### Response:\\n'], trie, num_beams=4)
    >>> len(set(beams.titles)), all(t in catalog for t in beams.titles), [b.rank for b in beams]
    (4, True, [0, 1, 2, 3])
    ```
    """
    keep = num_return_sequences or num_beams
    prompt_ids = tokenize_prompts(tokenizer, prompts, trie)
    options = DecodingOptions(pad_token_id=tokenizer.pad_token_id, shared_prompt_cache=shared_prompt_cache)
    step = batch_size or len(prompt_ids)
    results: list[RankedBeams] = []
    with eval_mode(model):
        for start in range(0, len(prompt_ids), step):
            results.extend(beam_search(model, prompt_ids[start : start + step], trie, num_beams, keep, options))
    return results
