"""Token ids at the two ends of decoding: prompts in (tokenized, checked against the trie, left-padded) and
completions out (cut after their EOS, as the trie keys them)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..trie import ItemTrie


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


def cut_after_eos(ids: list[int], eos: int | None) -> list[int]:
    """A completion's token ids up to and including its first EOS, the key the trie looks items up by (what follows
    is padding or more EOS).

    Example:
    ```python
    >>> from trl_rere.decoding import cut_after_eos
    >>> cut_after_eos([5, 6, 2, 2, 0], eos=2), cut_after_eos([5, 6], eos=2)
    ([5, 6, 2], [5, 6])
    ```
    """
    return ids[: ids.index(eos) + 1] if eos is not None and eos in ids else ids
