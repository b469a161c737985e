"""The reference `DecodingBackend`: transformers' `generate` with the trie processor and the score recorders.

`generate_beams` and `sample_from_trie` are tensor-level: a left-padded batch in, `(completion_ids, scores)` out.
`HFGenerate` wraps them in the backend contract (tokenized prompts in, `Completions` out).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessorList, PreTrainedModel

from ..trie import ItemTrie
from .backend import Completions
from .beam_cache import beam_search_cache
from .options import DecodingOptions
from .processor import TrieLogitsProcessor
from .recorders import SequenceLogProbRecorder, TrieScoreRecorder
from .tokens import left_pad


@torch.no_grad()
def _prefill_prompts(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_beams: int):
    """Runs each prompt but its last token once and repeats the KV cache for the beams, or returns None.

    HF beam search copies every prompt `num_beams` times before its first forward pass, so the prompt (usually much
    longer than a title) would be encoded G times; encoding it once halves ReRe's generation time. The last token is
    left for `generate`, which needs at least one new position to start from. Every process runs exactly one extra
    forward, so ZeRO-3 ranks stay in lock-step.
    """
    config = getattr(model, "config", None)
    if (
        num_beams < 2
        or input_ids.shape[1] < 2
        or config is None
        or getattr(config, "is_encoder_decoder", False)
        # a model that asks generate() for a static/quantized cache would refuse one passed in
        or getattr(getattr(model, "generation_config", None), "cache_implementation", None) is not None
    ):
        return None
    # Same positions as generate() gives left-padded rows (padding positions are masked out anyway).
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids[:, :-1],
        attention_mask=attention_mask[:, :-1],
        position_ids=position_ids[:, :-1],
        use_cache=True,
    )
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        return None
    cache.batch_repeat_interleave(num_beams)
    return cache


@torch.no_grad()
def generate_beams(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: ItemTrie,
    num_beams: int,
    num_return_sequences: int | None = None,
    pad_token_id: int | None = None,
    max_new_tokens: int | None = None,
    shared_prompt_cache: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs one constrained `generate` call over a left-padded batch; returns `(completion_ids, scores)` with
    `num_return_sequences` rows per prompt, best first (rows `b * n + r`). Scores are the plain sums of token
    log-probs; rows whose score is <= `INVALID_SCORE` are not valid titles (or repeat a better row).

    The scores come from a `TrieScoreRecorder`, not from HF's `output_scores`, which would keep a rows x vocabulary
    copy of the log-probs for every step of the search. Each prompt is encoded once and its KV cache repeated for
    its beams (`_prefill_prompts`). `shared_prompt_cache=True` also swaps in `beam_search_cache`'s layers, which
    reorder only the generated positions; they hold two copies of the cache, and the time they save is a CPU effect
    (benchmarks/beam_cache.md), hence opt-in."""
    n = num_return_sequences or num_beams
    if n > num_beams:
        raise ValueError(f"num_return_sequences ({n}) cannot exceed num_beams ({num_beams})")
    prompt_length = input_ids.shape[1]
    processor = TrieLogitsProcessor(trie, num_beams=num_beams)
    recorder = TrieScoreRecorder(processor)
    kwargs = {}
    max_new_tokens = max_new_tokens or trie.max_length
    cache = _prefill_prompts(model, input_ids, attention_mask, num_beams)
    if cache is not None:
        kwargs["cache"] = beam_search_cache(cache, max_new_tokens) if shared_prompt_cache else cache
    eos = trie.eos_token_id
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        do_sample=False,
        num_beams=num_beams,
        num_return_sequences=n,
        length_penalty=0.0,
        # With length_penalty 0 scores only fall as beams grow, so HF's stopping heuristic is exact.
        early_stopping=False,
        max_new_tokens=max_new_tokens,
        min_new_tokens=0,
        eos_token_id=eos,
        pad_token_id=pad_token_id if pad_token_id is not None else eos,
        logits_processor=LogitsProcessorList([processor, recorder]),
        return_dict_in_generate=True,
        # Keep user generation_config sampling knobs (top_k, temperature...) from touching the beam scores.
        temperature=None,
        top_k=None,
        top_p=None,
        repetition_penalty=None,
        **kwargs,
    )
    completion_ids = out.sequences[:, prompt_length:]
    scores = recorder.sequence_scores(completion_ids, n)
    # When a prompt has fewer titles than beams, HF fills the surplus rows from placeholder beams, which may repeat
    # a real beam's tokens (HF scores them near -1e9); flag every repeat after its first, best-ranked occurrence.
    rows, width = completion_ids.shape
    seq = completion_ids
    if trie.eos_token_id is not None:  # compare titles, not what follows their EOS (padding or more EOS)
        after_eos = (seq == trie.eos_token_id).long().cumsum(-1) - (seq == trie.eos_token_id).long() > 0
        seq = seq.masked_fill(after_eos, -1)
    seq = seq.view(rows // n, n, width)
    earlier = torch.ones(n, n, dtype=torch.bool, device=seq.device).tril(-1)
    repeat = (seq.unsqueeze(2) == seq.unsqueeze(1)).all(-1) & earlier
    scores = scores.masked_fill(repeat.any(-1).view(-1), float("-inf"))
    return completion_ids, scores


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


class HFGenerate:
    """`DecodingBackend` through `model.generate`: prompts left-padded on the model's device, padding with
    `options.pad_token_id` (the trie's EOS when None).

    Example:
    ```python
    >>> from trl_rere.testing import tiny_recommender
    >>> from trl_rere.decoding import DecodingOptions, HFGenerate, cut_after_eos, tokenize_prompts
    >>> catalog, tokenizer, model, trie = tiny_recommender()  # 5 titles, a random tiny Qwen2, the title trie
    >>> prompt_ids = tokenize_prompts(tokenizer, ['"Red Ball"\\n### Response:\\n'], trie)
    >>> out = HFGenerate().sample(model.eval(), prompt_ids, trie, num_samples=3, options=DecodingOptions("sample"))
    >>> rows = [cut_after_eos(row, trie.eos_token_id) for row in out.completion_ids.tolist()]
    >>> out.rows_per_prompt, all(trie.lookup(row) >= 0 for row in rows)  # every sample is a catalog item
    (3, True)
    ```
    """

    def _batch(self, model, prompt_ids: Sequence[Sequence[int]], trie: ItemTrie, options: DecodingOptions) -> dict:
        """The padded prompts as the tensor-level functions' arguments."""
        pad_id = options.pad_token_id if options.pad_token_id is not None else trie.eos_token_id
        input_ids, attention_mask = left_pad([list(p) for p in prompt_ids], pad_id, next(model.parameters()).device)
        return {"model": model, "input_ids": input_ids, "attention_mask": attention_mask, "trie": trie,
                "pad_token_id": pad_id}

    def beam_search(
        self, model, prompt_ids: Sequence[Sequence[int]], trie: ItemTrie, num_beams: int, options: DecodingOptions
    ) -> Completions:
        batch = self._batch(model, prompt_ids, trie, options)
        ids, scores = generate_beams(**batch, num_beams=num_beams, shared_prompt_cache=options.shared_prompt_cache)
        return Completions(ids, scores, num_beams)

    def sample(
        self, model, prompt_ids: Sequence[Sequence[int]], trie: ItemTrie, num_samples: int, options: DecodingOptions
    ) -> Completions:
        batch = self._batch(model, prompt_ids, trie, options)
        knobs = {"temperature": options.temperature, "top_p": options.top_p, "top_k": options.top_k}
        ids, scores = sample_from_trie(**batch, num_samples=num_samples, **knobs)
        return Completions(ids, scores, num_samples)
