"""The trie constraint on `generate`: a vectorised logits processor and the HF `prefix_allowed_tokens_fn`."""

from __future__ import annotations

from typing import NamedTuple

import torch
from transformers import LogitsProcessor

from ..trie import ItemTrie


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
