"""The decoding contract: prompt token ids in; per prompt, completion token ids and their scores out.

`DecodingBackend` is the seam where another way of running the search plugs in (a faster GPU path, vLLM): it gets
prompts already tokenized and checked (`tokenize_prompts`) and returns `Completions`. `HFGenerate`
(`hf_generate.py`, transformers' `generate` with the trie processor) is the reference implementation; everything
above it (`search.beam_search`, `groups.draw_groups`, the evaluation) only sees this contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from ..trie import ItemTrie
from .options import DecodingOptions


# Scores at or below this mark rows that are not a valid item: HF's placeholder beams (initialised at -1e9), rows
# that left the trie, and repeats of a better row of the same prompt.
INVALID_SCORE = -1e8


@dataclass
class Completions:
    """What a backend returns for `num_prompts` prompts: `rows_per_prompt` rows each, in prompt order.

    `completion_ids` is `(num_prompts * rows_per_prompt, steps)`: each row a completion's token ids, cut or not after
    its EOS (`cut_after_eos` keys it for the trie). `scores` is `(num_prompts * rows_per_prompt,)`: the sum of the
    completion's token log-probs under the model's full-vocabulary distribution (`length_penalty` 0); a score
    `<= INVALID_SCORE` (or NaN) marks a row that is no valid item. Beam search returns a prompt's rows best first and
    each valid item once; sampling returns them in draw order, repeats included.
    """

    completion_ids: torch.Tensor
    scores: torch.Tensor
    rows_per_prompt: int

    def __post_init__(self):
        rows = self.completion_ids.shape[0]
        if self.scores.shape != (rows,) or self.rows_per_prompt < 1 or rows % self.rows_per_prompt:
            raise ValueError(
                f"Completions needs one score per row and whole prompts: got {rows} rows, scores of shape "
                f"{tuple(self.scores.shape)}, rows_per_prompt={self.rows_per_prompt}"
            )

    @property
    def num_prompts(self) -> int:
        return self.completion_ids.shape[0] // self.rows_per_prompt


@runtime_checkable
class DecodingBackend(Protocol):
    """Runs trie-constrained decoding for a batch of tokenized prompts. The model is already in the mode the caller
    wants (eval: `search.eval_mode`); a backend neither tokenizes nor checks prompts, nor switches modes."""

    def beam_search(
        self, model, prompt_ids: Sequence[Sequence[int]], trie: ItemTrie, num_beams: int, options: DecodingOptions
    ) -> Completions:
        """`num_beams` rows per prompt, best first: the best distinct items a `num_beams`-beam search finds."""
        ...

    def sample(
        self, model, prompt_ids: Sequence[Sequence[int]], trie: ItemTrie, num_samples: int, options: DecodingOptions
    ) -> Completions:
        """`num_samples` items drawn per prompt from the model's distribution restricted to the trie."""
        ...
