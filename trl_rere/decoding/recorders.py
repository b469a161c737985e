"""Score recorders: logits processors that change nothing and keep what the search or the sampler scored.

`TrieScoreRecorder` reads the entries a `TrieLogitsProcessor` allowed (so it follows the processor in the list);
`SequenceLogProbRecorder` reads the model's own distribution (so it precedes any masking).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from .processor import AllowedTokens, TrieLogitsProcessor


class TrieScoreRecorder(LogitsProcessor):
    """Keeps, at every step, the processed score of each token a `TrieLogitsProcessor` allowed, so that
    `sequence_scores` can give every finished title its beam score.

    HF's `output_scores` keeps a rows x vocabulary copy of the scores for every step of the search (about 240 MB per
    step for 8 prompts x 50 beams at Qwen's vocabulary); this keeps the few allowed entries per row, as the processor
    wrote them into the masked scores and reports them in `processor.allowed`. Place it right after the processor;
    it changes nothing. The recorded scores are HF's beam scores when nothing after the processor changes the scores
    (`generate_beams` turns HF's temperature, top-k, top-p and repetition penalty off).

    A node of the trie has one depth and one prefix, so `(prompt, child node)` names an edge once for the whole
    search, whichever beam scored it, and a title's score is the sum over its path.

    Example:
    ```python
    >>> from trl_rere.testing import tiny_recommender
    >>> catalog, tokenizer, model, trie = tiny_recommender()  # 5 titles, a random tiny Qwen2, the title trie
    >>> from transformers import LogitsProcessorList
    >>> from trl_rere import TrieLogitsProcessor
    >>> from trl_rere.decoding import TrieScoreRecorder
    >>> inputs = tokenizer(['"Red Ball"\\n### Response:\\n'], return_tensors="pt")
    >>> processor = TrieLogitsProcessor(trie, num_beams=4)
    >>> recorder = TrieScoreRecorder(processor)
    >>> out = model.generate(**inputs, num_beams=4, num_return_sequences=4, length_penalty=0.0, do_sample=False,
    ...                      max_new_tokens=trie.max_length, logits_processor=LogitsProcessorList([processor, recorder]))
    >>> scores = recorder.sequence_scores(out[:, inputs["input_ids"].shape[1] :], rows_per_prompt=4)
    >>> bool((scores[:-1] >= scores[1:]).all()) and bool((scores < 0).all())  # summed log-probs, best first
    True
    ```
    """

    def __init__(self, processor: TrieLogitsProcessor):
        self.processor = processor
        self._seen: AllowedTokens | None = None
        self._edge_keys: list[torch.Tensor] = []  # per step: prompt * num_nodes + child node of every allowed entry
        self._edge_scores: list[torch.Tensor] = []  # ... and its processed score

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        allowed = self.processor.allowed
        if allowed is None or allowed is self._seen:
            raise RuntimeError(
                "TrieScoreRecorder found no new step of its TrieLogitsProcessor: put it right after that processor in "
                "the same LogitsProcessorList"
            )
        self._seen = allowed
        rows = scores.shape[0]
        row = torch.arange(rows, device=scores.device).unsqueeze(1) if allowed.rows is None else allowed.rows
        keys = (row // self.processor.beams_per_prompt(rows)) * self.processor.trie.num_nodes + allowed.nodes
        # Entries of dead rows get key -1, which no lookup asks for: a boolean mask would cost a host sync per step.
        # Duplicate keys (beams that share a prefix, block padding) carry equal scores.
        self._edge_keys.append(torch.where(allowed.live, keys, -1).reshape(-1))
        self._edge_scores.append(allowed.values.reshape(-1))
        return scores

    def sequence_scores(self, completion_ids: torch.Tensor, rows_per_prompt: int) -> torch.Tensor:
        """Scores of finished generations from the edge scores recorded during the search.

        `completion_ids` holds `rows_per_prompt` rows per prompt, in prompt order (as `generate` returns them). Each
        row's score is the sum of the processed log-probs along its trie path up to and including EOS, added in
        decoding order in float32 as HF adds them, so it equals HF's beam score. Rows that are not a complete title,
        or that use an edge the search never scored, get -inf."""
        trie = self.processor.trie
        device = completion_ids.device
        rows, steps = completion_ids.shape
        arrays = trie.device_arrays(device)
        edge_keys = arrays["edge_keys"]
        if not self._edge_keys or edge_keys.numel() == 0:
            return torch.full((rows,), float("-inf"), device=device)
        keys, order = torch.sort(torch.cat(self._edge_keys))
        values = torch.cat(self._edge_scores).float()[order]
        prompt = torch.arange(rows, device=device) // rows_per_prompt
        node = torch.zeros(rows, dtype=torch.long, device=device)
        score = torch.zeros(rows, dtype=torch.float32, device=device)
        walking = torch.ones(rows, dtype=torch.bool, device=device)
        for t in range(steps):
            # the walk stops at the first token that is not a scored trie edge: EOS's padding, or a row off the trie
            edge = node * trie.vocab_size + completion_ids[:, t]
            pos = torch.searchsorted(edge_keys, edge).clamp(max=edge_keys.numel() - 1)
            child = pos + 1
            key = prompt * trie.num_nodes + child
            at = torch.searchsorted(keys, key).clamp(max=keys.numel() - 1)
            walking &= (edge_keys[pos] == edge) & (keys[at] == key)
            score = torch.where(walking, score + values[at], score)
            node = torch.where(walking, child, node)
        complete = arrays["node_title"][node] >= 0
        return torch.where(complete, score, torch.full_like(score, float("-inf")))


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
