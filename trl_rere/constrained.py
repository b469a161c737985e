"""Trie-constrained decoding: a vectorised logits processor, the HF `prefix_allowed_tokens_fn`, and beam search."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from .beam_cache import beam_search_cache
from .beam_scores import TrieScoreRecorder
from .trie import ItemTrie


# Beam scores at or below this come from HF's placeholder beams (initialised at -1e9) or from rows that left the trie.
INVALID_SCORE = -1e8


class AllowedTokens(NamedTuple):
    """The entries one call of `TrieLogitsProcessor` left finite, in the layout its gather used.

    Block layout (`rows is None`): `tokens`, `nodes` and `values` are `(rows, width)`, row `r` of them belongs to
    score row `r`, and `live` is `(rows, 1)`. Flat layout: all five are `(total,)`, one entry per allowed `(row, token)`
    pair. `nodes` is the trie node each token leads to and `values` the score written there (the input's own score);
    where `live` is False the entry is the EOS that a row off the trie (or past the end of its title) keeps, and its
    node means nothing. Block rows may repeat their last entry as padding. `values` is kept so that a recorder need
    not gather the same entries a second time (on a 1M-title catalog that gather cost a fifth of the processor's time).
    """

    tokens: torch.Tensor
    nodes: torch.Tensor
    values: torch.Tensor
    live: torch.Tensor
    rows: torch.Tensor | None


class TrieLogitsProcessor(LogitsProcessor):
    """Masks every token that does not continue a catalog title, for all beams at once.

    It keeps the trie node of every row. HF beam search reorders rows between steps without telling the processor,
    so at each step a row's parent is found by matching its generated prefix against the previous step's rows of
    the same prompt (a `(batch, beams, beams)` comparison, independent of vocabulary and catalog size); the new node
    is one `searchsorted` over the trie's edge keys. Masking gathers the allowed scores and writes them into an
    all -inf tensor: no (rows x vocab) mask is built, no Python loop runs over rows, and the only host sync per step
    reads the largest and the total number of allowed tokens. The gather is a (rows x widest node) block when rows
    are alike and a flat list of the allowed (row, token) pairs when one wide node (a popular brand with thousands of
    continuations) would make that block mostly padding, so its cost follows the number of allowed tokens rather than
    the catalog size. What a call wrote is readable afterwards as `allowed` (`TrieScoreRecorder` builds on it).

    `num_beams` is the `num_beams` of the `generate` call. The first call masks its input in place. In beam search
    (`num_beams > 1`) the processor then keeps that tensor and returns it again at every later step, -inf outside
    the allowed entries: each step only resets the previous step's entries, so no pass over the whole vocabulary is
    made (that fill was most of the cost). Later inputs are left untouched and the returned tensor is valid until the
    next call, which is safe because HF beam search copies what it keeps (`output_scores` stores clones). Sampling
    and greedy search (`num_beams=1`) store the processed scores without copying them, so there every input is masked
    in place.

    Create one processor per `generate` call: it learns the prompt length and beam layout on its first call.

    Example:
    ```python
    >>> from trl_rere.testing import tiny_recommender
    >>> catalog, tokenizer, model, trie = tiny_recommender()  # 5 titles, a random tiny Qwen2, the title trie
    >>> import torch
    >>> from trl_rere import TrieLogitsProcessor
    >>> prompt = torch.tensor([tokenizer('"Red Ball"\\n### Response:\\n')["input_ids"]])
    >>> masked = TrieLogitsProcessor(trie)(prompt, torch.zeros(1, len(tokenizer)))  # the first step after a prompt
    >>> allowed = torch.isfinite(masked[0]).nonzero().flatten().tolist()
    >>> allowed == sorted(trie.children(0).tolist())  # the first tokens of the catalog's completions, nothing else
    True
    ```
    """

    def __init__(self, trie: ItemTrie, num_beams: int = 1):
        self.trie = trie
        self.num_beams = num_beams
        self.prompt_length: int | None = None
        self._state: torch.Tensor | None = None  # (rows,) trie node per row, -1 once a row left the trie
        self._prev: torch.Tensor | None = None  # previous step's generated tokens, (rows, t-1)
        self._allowed: AllowedTokens | None = None
        self._out: torch.Tensor | None = None  # beam search: the returned tensor, -inf but for `_allowed`

    @property
    def allowed(self) -> AllowedTokens | None:
        """The entries the last call left finite (None before the first call). Read-only: the next call replaces it."""
        return self._allowed

    def beams_per_prompt(self, rows: int) -> int:
        """Rows per prompt in a call with `rows` rows: beam search passes prompts x beams rows, sampling one row per
        sample, and rows of the same prompt with the same prefix are interchangeable either way."""
        return self.num_beams if rows % self.num_beams == 0 else 1

    def _advance(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows, cur_len = input_ids.shape
        arrays = self.trie.device_arrays(input_ids.device)
        if self.prompt_length is None or cur_len <= self.prompt_length or self._state is None:
            self.prompt_length = cur_len
            self._prev = input_ids[:, cur_len:]
            self._state = torch.zeros(rows, dtype=torch.long, device=input_ids.device)
            return self._state
        generated = input_ids[:, self.prompt_length :]
        steps = generated.shape[1]
        if steps != self._prev.shape[1] + 1:
            raise RuntimeError("TrieLogitsProcessor must see every decoding step; create one per generate() call")
        if steps == 1:
            parent_state = self._state
        else:
            beams = self.beams_per_prompt(rows)
            cur = generated[:, :-1].view(rows // beams, beams, 1, steps - 1)
            prev = self._prev.view(rows // beams, 1, beams, steps - 1)
            parent = (cur == prev).all(-1).to(torch.int8).argmax(-1)  # (batch, beams): a row with the same prefix
            parent = parent + torch.arange(0, rows, beams, device=parent.device).unsqueeze(1)
            parent_state = self._state[parent.view(-1)]
        last = generated[:, -1]
        keys = parent_state.clamp(min=0) * self.trie.vocab_size + last
        edge_keys = arrays["edge_keys"]
        pos = torch.searchsorted(edge_keys, keys).clamp(max=edge_keys.numel() - 1)
        found = (edge_keys[pos] == keys) & (parent_state >= 0)
        self._state = torch.where(found, pos + 1, torch.full_like(pos, -1))
        self._prev = generated
        return self._state

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        state = self._advance(input_ids)
        arrays = self.trie.device_arrays(scores.device)
        rows, vocab = scores.shape
        device = scores.device
        node = state.clamp(min=0)
        count = torch.where(state >= 0, arrays["num_children"][node], 0)
        live = count > 0
        # A row that left the trie (an HF placeholder beam, already at -inf) or finished its title while the batch
        # goes on (sampling keeps finished rows) may only emit EOS; it keeps EOS's own score so that no row is all
        # -inf, which would make sampling fail.
        eos = self.trie.eos_token_id if self.trie.eos_token_id is not None else 0
        take = torch.where(live, count, 1)  # allowed tokens per row
        width, total = torch.stack([take.max(), take.sum()]).tolist()  # the only host sync per step
        first = arrays["first_child"][node]
        last_node = arrays["node_token"].numel() - 1
        if rows * width <= 2 * total:
            # Rows allow similar numbers of tokens: gather a (rows x width) block. Padding slots repeat the row's
            # last child, so scattering them back writes that child's own value again.
            child = torch.minimum(torch.arange(width, device=device), (take - 1).unsqueeze(1)) + first.unsqueeze(1)
            child.clamp_(max=last_node)
            live = live.unsqueeze(1)
            tokens = torch.where(live, arrays["node_token"][child], eos)
            values = scores.gather(1, tokens)
            out = self._blank_output(scores)
            self._allowed = AllowedTokens(tokens, child, values, live, None)
            return out.scatter_(1, tokens, values)
        # A few rows sit on a wide node (say a popular brand with thousands of continuations): a block that wide
        # would be mostly padding, so list the sum(take) allowed (row, token) pairs flat instead.
        row = torch.repeat_interleave(torch.arange(rows, device=device), take, output_size=total)
        child = (first - (torch.cumsum(take, 0) - take))[row] + torch.arange(total, device=device)
        child.clamp_(max=last_node)
        live = live[row]
        tokens = torch.where(live, arrays["node_token"][child], eos)
        flat = row * vocab + tokens
        values = scores.reshape(-1)[flat]
        out = self._blank_output(scores)
        self._allowed = AllowedTokens(tokens, child, values, live, row)
        out.view(-1)[flat] = values
        return out

    def _blank_output(self, scores: torch.Tensor) -> torch.Tensor:
        """A contiguous all -inf tensor shaped like `scores`, for the allowed scores (already read) to be written into.

        In beam search, after the first step it is the tensor returned last time with only the entries written then
        (`allowed`, not yet replaced) reset to -inf. Otherwise (and on the first step) it is `scores` itself, filled with -inf in place; in beam
        search that tensor is then kept for the next steps, provided it is not a view of a larger tensor (HF beam
        search computes fresh log-probs every step and keeps only copies of what it returns)."""
        out = self._out
        if (
            out is not None
            and out is not scores
            and out.shape == scores.shape
            and out.dtype == scores.dtype
            and out.device == scores.device
        ):
            written = self._allowed
            if written.rows is None:
                out.scatter_(1, written.tokens, float("-inf"))
            else:
                out.view(-1).index_fill_(0, written.rows * out.shape[1] + written.tokens, float("-inf"))
            return out
        out = scores if scores.is_contiguous() else scores.contiguous()
        out.fill_(float("-inf"))
        self._out = out if self.num_beams > 1 and out._base is None else None
        return out


def make_prefix_allowed_tokens_fn(trie: ItemTrie, prompt_length: int):
    """The HF-convention constraint: `fn(batch_id, input_ids) -> allowed token ids` for one row.

    `prompt_length` is the (left-padded) prompt width passed to `generate`. Use with
    `model.generate(..., prefix_allowed_tokens_fn=fn)`; it gives the same beams as `TrieLogitsProcessor`, only slower
    (HF calls it once per row per step and builds a full mask).

    Example:
    ```python
    >>> from trl_rere.testing import tiny_recommender
    >>> catalog, tokenizer, model, trie = tiny_recommender()  # 5 titles, a random tiny Qwen2, the title trie
    >>> from trl_rere import make_prefix_allowed_tokens_fn
    >>> inputs = tokenizer(['"Red Ball"\\n### Response:\\n'], return_tensors="pt")
    >>> fn = make_prefix_allowed_tokens_fn(trie, prompt_length=inputs["input_ids"].shape[1])
    >>> out = model.generate(**inputs, num_beams=4, num_return_sequences=4, length_penalty=0.0, do_sample=False,
    ...                      prefix_allowed_tokens_fn=fn, max_new_tokens=trie.max_length)
    >>> all(trie.lookup(row) >= 0 for row in out[:, inputs["input_ids"].shape[1] :].tolist())
    True
    ```
    """
    eos = trie.eos_token_id if trie.eos_token_id is not None else 0
    cache: dict[tuple[int, ...], list[int]] = {}

    def prefix_allowed_tokens_fn(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        generated = tuple(input_ids[prompt_length:].tolist())
        allowed = cache.get(generated)
        if allowed is None:
            node = trie.walk(generated)
            # HF raises on an empty list; a row off the trie may only end.
            allowed = trie.children(node).tolist() if node >= 0 else []
            allowed = allowed or [eos]
            cache[generated] = allowed
        return allowed

    return prefix_allowed_tokens_fn


@dataclass
class Beam:
    """One item proposed by the beam search."""

    title: str
    item_ids: list[int]
    token_ids: list[int]
    score: float  # sum of the full-vocabulary token log-probs (length_penalty 0)
    rank: int  # 0-based position among the prompt's beams, best first
    title_index: int = -1


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


def left_pad(
    batch: Sequence[Sequence[int]], pad_id: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists -> `(input_ids, attention_mask)` on `device`, padded on the left as decoder-only `generate`
    needs (new tokens are appended on the right, so every row's prompt must end at the same column)."""
    if not batch:
        raise ValueError("cannot pad an empty batch of prompts")
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, ids in enumerate(batch):
        if len(ids) == 0:
            raise ValueError(f"prompt {i} of the batch has no tokens")
        input_ids[i, width - len(ids) :] = torch.as_tensor(ids, dtype=torch.long)
        attention_mask[i, width - len(ids) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def tokenize_prompts(tokenizer, prompts: Sequence[str], trie: ItemTrie | None = None, check: bool = True) -> list[list[int]]:
    """Tokenizes prompts as the model sees them in training and in evaluation alike, with the tokenizer's special
    tokens (a BOS, for tokenizers that add one, as TRL's SFT and GRPO tokenization do). With `check` and a trie built
    for a prompt ending, checks that each prompt ends in it and that an item tokenizes after the prompt exactly as the
    trie has it (otherwise the trie's tokens would not match what the model sees).

    The check probes with the trie's first item: `tokenize(prompt + completion)` must equal `tokenize(prompt)` followed
    by that item's trie tokens. Comparing the ending's own tokens instead would reject SentencePiece-style tokenizers,
    which tokenize the ending differently at the start of a text (a prepended "▁") than inside the prompt, although
    the completion's tokens are the same."""
    ids = tokenizer(list(prompts))["input_ids"]
    suffix = trie.prompt_suffix if trie is not None else None
    if check and suffix:
        for i, p in enumerate(prompts):
            if not p.endswith(suffix):
                raise ValueError(
                    f"prompt {i} does not end with the trie's prompt_suffix {suffix!r} (it ends with {p[-30:]!r}); "
                    f"build the trie with the prompt's real ending"
                )
        if trie.titles is not None:
            probe = trie.item_format.render(trie.titles[0])
            probe_ids = trie.title_token_ids(0)
            if trie.eos_token_id is not None and probe_ids and probe_ids[-1] == trie.eos_token_id:
                probe_ids = probe_ids[:-1]
            full = tokenizer([p + probe for p in prompts])["input_ids"]
            for i, (row, both) in enumerate(zip(ids, full)):
                if both != row + probe_ids:
                    appended = tokenizer("x")["input_ids"][-1:] != tokenizer("x", add_special_tokens=False)["input_ids"][-1:]
                    reason = (
                        "the tokenizer appends special tokens to every text (its post-processor), which would sit "
                        "between prompt and completion; use a tokenizer that only prepends them"
                        if appended
                        else f"the prompt's ending {suffix!r} merges with the text around it; put a separator (e.g. "
                        f"a newline) before it"
                    )
                    raise ValueError(f"prompt {i}: the completion {probe!r} does not tokenize after it as the trie has it: {reason}")
    return ids


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
    (benchmarks/RESULTS.md, `beam_cache*`), hence opt-in."""
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


def _cut_after_eos(ids: list[int], eos: int | None) -> list[int]:
    if eos is not None and eos in ids:
        return ids[: ids.index(eos) + 1]
    return ids


def collect_beams(
    trie: ItemTrie, completion_ids: torch.Tensor, scores: torch.Tensor, num_prompts: int, keep: int
) -> list[RankedBeams]:
    """Turns `generate_beams` output into per-prompt `RankedBeams`, dropping invalid or duplicate rows."""
    per_prompt = completion_ids.shape[0] // num_prompts
    rows = completion_ids.tolist()
    scores = scores.tolist()
    catalog = trie.catalog
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
            ids = _cut_after_eos(rows[r], trie.eos_token_id)
            title_index = trie.lookup(ids)
            if title_index < 0 or title_index in seen:
                continue
            seen.add(title_index)
            title = trie.title(title_index)
            item_ids = catalog.item_ids(title) if catalog is not None else []
            group.beams.append(Beam(title, list(item_ids), ids, score, len(group.beams), title_index))
        result.append(group)
    return result


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
    `shared_prompt_cache` is `generate_beams`'s.

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
    if keep > num_beams:
        raise ValueError(f"num_return_sequences ({keep}) cannot exceed num_beams ({num_beams})")
    prompt_ids = tokenize_prompts(tokenizer, prompts, trie)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else trie.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    results: list[RankedBeams] = []
    try:
        step = batch_size or len(prompt_ids)
        for start in range(0, len(prompt_ids), step):
            chunk = prompt_ids[start : start + step]
            input_ids, attention_mask = left_pad(chunk, pad_id, device)
            completion_ids, scores = generate_beams(
                model,
                input_ids,
                attention_mask,
                trie,
                num_beams=num_beams,
                num_return_sequences=num_beams,
                pad_token_id=pad_id,
                shared_prompt_cache=shared_prompt_cache,
            )
            results.extend(collect_beams(trie, completion_ids, scores, len(chunk), keep))
    finally:
        model.train(was_training)
    return results
