"""Per-token log-probabilities of a GRPO batch that run each group's shared prompt through the model once.

Every member of a ReRe group is a completion of the same prompt, and the prompt is most of the sequence (a history of
items, then one item). GRPO scores each completion with a forward pass over prompt + completion, for the policy and
again for the reference model, so the prompt is computed G times. `group_log_probs` computes the distinct prompts
once, copies their KV cache to the group members, and runs only the completions on top of it: the same positions, the
same attention mask and the same log-probs (up to float rounding), with the gradient flowing back through the shared
prompt. It needs a model that takes a KV cache, and no gradient checkpointing (which drops the cache in
training).

Example:

```python
>>> import torch
>>> from trl.trainer.utils import add_fused_lm_head
>>> from trl_rere.group_logprobs import group_log_probs
>>> from trl_rere.testing import tiny_causal_lm, train_tokenizer
>>> tok = train_tokenizer(["the user bought a b c"], vocab_size=300)
>>> model = tiny_causal_lm(tok).eval()
>>> add_fused_lm_head(model)
>>> prompt, completions = [5, 6, 7, 8], [[9, 10], [11, 12], [13, 14]]   # one prompt, a group of three
>>> input_ids = torch.tensor([prompt + c for c in completions])
>>> mask = torch.ones_like(input_ids)
>>> shared, _ = group_log_probs(model, input_ids, mask, logits_to_keep=2)
>>> full = model(input_ids=input_ids, attention_mask=mask, labels=input_ids, fused_lm_head=True).log_probs[:, -2:]
>>> torch.allclose(shared, full, atol=1e-5)
True

```
"""

from __future__ import annotations

import torch

from ._compat import CACHE_ARG, fused_head_forward


def distinct_prompts(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows of the first occurrence of each distinct prompt, index of each row's prompt among them).

    Prompts are compared with their padding mask, so a pad id that is also a real token cannot merge two prompts.

    Example:

    ```python
    >>> import torch
    >>> ids = torch.tensor([[0, 4, 5], [0, 4, 5], [3, 4, 5]])
    >>> first, which = distinct_prompts(ids, torch.tensor([[0, 1, 1], [0, 1, 1], [1, 1, 1]]))
    >>> first.tolist(), which.tolist()
    ([0, 2], [0, 0, 1])

    ```
    """
    key = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    n = int(inverse.max()) + 1
    rows = torch.arange(len(inverse), device=inverse.device)
    # first row of each prompt, in batch order, so that the distinct prompts keep the batch's order
    first = torch.full((n,), len(inverse), device=inverse.device, dtype=rows.dtype).scatter_reduce(
        0, inverse, rows, reduce="amin")
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=order.device)
    return first[order], rank[inverse]


def group_log_probs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int, *,
                    compute_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of the last `logits_to_keep` tokens of each row, the prompts computed once each.

    `model` is a causal LM patched with TRL's `add_fused_lm_head` (as `GRPOTrainer` patches its policy and reference
    models), possibly wrapped by DeepSpeed, DDP or PEFT. Rows whose first `input_ids.size(1) - logits_to_keep` tokens
    and mask agree share one prompt pass. Returns tensors of shape `(rows, logits_to_keep)`, equal to TRL's
    full-sequence forward with labels on the last `logits_to_keep` positions; the entropy is `None` unless asked for.
    """
    prompt_len = input_ids.size(1) - logits_to_keep
    if prompt_len < 2:
        raise ValueError(f"group_log_probs needs prompts of at least 2 tokens, got {prompt_len}")
    first, which = distinct_prompts(input_ids[:, :prompt_len], attention_mask[:, :prompt_len])
    # The prompt pass stops one token short: the last prompt token goes with the completion, so that the position that
    # predicts the first completion token is in the second pass, where the fused head scores it.
    head = model(input_ids=input_ids[first, : prompt_len - 1], attention_mask=attention_mask[first, : prompt_len - 1],
                 use_cache=True, logits_to_keep=1)
    cache = getattr(head, CACHE_ARG)
    cache.reorder_cache(which)  # each row gets its prompt's keys and values; autograd sums the copies' gradients
    tail = input_ids[:, prompt_len - 1:]
    labels = tail.masked_fill(attention_mask[:, prompt_len - 1:] == 0, -100)
    labels[:, 0] = -100
    log_probs, entropy = fused_head_forward(model, input_ids=tail, attention_mask=attention_mask, labels=labels,
                                            **{CACHE_ARG: cache})
    entropy = entropy[:, -logits_to_keep:] if compute_entropy else None
    return log_probs[:, -logits_to_keep:], entropy
