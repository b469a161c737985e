"""Semantic-ID code tokens: a SID string's codes, the check that each is one token, and adding them to a tokenizer.

A semantic ID (SID) names an item by a few discrete codes, one per level of a residual quantiser over the item's text
embedding, written as tokens `<a_N>`, `<b_N>`, `<c_N>`, ... and concatenated without separators
(`"<a_236><b_231><c_226>"`). MiniOneRec (`github.com/AkaliKong/MiniOneRec`) adds every code to the tokenizer as one
new token, so that an item is as many tokens as it has levels and the trie branches once per level. This module knows
no file layout (`trl_rere.data` reads and writes SID files) and no decoding; the trie calls `check_sid_tokens` for
every item format with a `code_pattern`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .catalog import ItemCatalog
from .item_format import DEFAULT_PROMPT_SUFFIX, SID_CODE_PATTERN, ItemFormat, get_item_format


_CODE = re.compile(SID_CODE_PATTERN)
_SID = re.compile(f"(?:{SID_CODE_PATTERN})+")


class SIDTokenError(ValueError):
    """A semantic-ID code that is not exactly one token of the tokenizer (e.g. the codes were never added)."""


# -- SID strings ------------------------------------------------------------------------------------------------------
def split_sid(sid: str) -> list[str]:
    """The code tokens of a SID string: `"<a_1><b_22><c_3>"` -> `["<a_1>", "<b_22>", "<c_3>"]`.

    Raises `ValueError` for anything that is not a non-empty concatenation of `<x_N>` codes (spaces, separators, a
    truncated code): such a string would tokenize into ordinary text pieces, not codes.
    """
    if not isinstance(sid, str):
        raise ValueError(f"a SID must be a string, got {type(sid).__name__} {sid!r}")
    if not _SID.fullmatch(sid):
        raise ValueError(f"malformed SID {sid[:80]!r}: expected a concatenation of <x_N> codes like '<a_1><b_2><c_3>'")
    return _CODE.findall(sid)


def _code_key(code: str) -> tuple[str, int]:
    level, _, number = code[1:-1].rpartition("_")
    return level, int(number)


def sid_codes(catalog_or_sids: ItemCatalog | Iterable[str]) -> list[str]:
    """Every distinct code token of the SIDs (a catalog's or a list's), by level then number (`<a_0>, <a_1>, ...`)."""
    sids = catalog_or_sids.titles if isinstance(catalog_or_sids, ItemCatalog) else catalog_or_sids
    if isinstance(sids, str):
        raise TypeError("pass a catalog or a list of SID strings, not a single string")
    codes: set[str] = set()
    for k, sid in enumerate(sids):
        try:
            codes.update(split_sid(sid))
        except ValueError as e:
            raise ValueError(f"item {k}: {e}") from None
    if not codes:
        raise ValueError("no SIDs given")
    return sorted(codes, key=_code_key)


# -- code tokens ------------------------------------------------------------------------------------------------------
def check_sid_tokens(
    tokenizer, catalog_or_sids: ItemCatalog | Iterable[str], prompt_suffix: str | None = DEFAULT_PROMPT_SUFFIX
) -> dict[str, int]:
    """Checks that every code of the SIDs is exactly one token where the model meets it; returns `{code: token id}`.

    For the trie to branch once per code and for the rewards to read items back, each code must be a token of the
    vocabulary, and each SID's completion, tokenized after the prompt ending as the trie tokenizes it
    (`prompt_suffix + sid + "\\n"`), must be the ending's tokens, then exactly those code tokens, then the newline's,
    and decode back to the same text. The codes are checked in context rather than alone because SentencePiece-style
    tokenizers put a word-start piece before a text's first token. Raises `SIDTokenError` naming the first code or SID
    that breaks this; `add_sid_tokens` fixes the usual cause (codes not in the vocabulary).

    Example:
    ```python
    >>> from trl_rere.sid_tokens import check_sid_tokens
    >>> from trl_rere.testing import train_tokenizer
    >>> check_sid_tokens(train_tokenizer(["### Response:\\n"]), ["<a_1><b_2><c_3>"])
    Traceback (most recent call last):
    ...
    trl_rere.sid_tokens.SIDTokenError: the SID code '<a_1>' is not a token of the tokenizer ...
    ```
    """
    sids = list(catalog_or_sids.titles if isinstance(catalog_or_sids, ItemCatalog) else catalog_or_sids)
    codes = sid_codes(sids)
    vocab = tokenizer.get_vocab()
    for code in codes:
        if code not in vocab:
            pieces = tokenizer.tokenize((prompt_suffix or "") + code)[len(tokenizer.tokenize(prompt_suffix or "")):]
            raise SIDTokenError(
                f"the SID code {code!r} is not a token of the tokenizer (it splits into {pieces}): add the catalog's "
                f"codes first, trl_rere.add_sid_tokens(tokenizer, catalog, model=model)"
            )
    ids = {code: vocab[code] for code in codes}
    fmt = get_item_format("sid", prompt_suffix=prompt_suffix)
    head = tokenizer(prompt_suffix, add_special_tokens=False)["input_ids"] if prompt_suffix else []
    texts = [fmt.render(sid) for sid in sids]
    encoded = tokenizer([(prompt_suffix or "") + t for t in texts], add_special_tokens=False)["input_ids"]
    tail = None  # the newline's tokens after a code, the same for every SID
    for sid, text, tokens in zip(sids, texts, encoded):
        codes_ids = [ids[c] for c in split_sid(sid)]
        rest = tokens[len(head) + len(codes_ids) :]
        tail = rest if tail is None else tail
        if tokens[: len(head)] != head or tokens[len(head) : len(head) + len(codes_ids)] != codes_ids or rest != tail:
            expected = head + codes_ids + tail
            raise SIDTokenError(
                f"the completion {text!r} after {prompt_suffix!r} tokenizes as "
                f"{tokenizer.convert_ids_to_tokens(tokens)}, not as the ending, one token per code and the newline "
                f"({tokenizer.convert_ids_to_tokens(expected)}): a code merges with the text around it"
            )
        decoded = tokenizer.decode(tokens[len(head) :], skip_special_tokens=True)
        if decoded != text:
            raise SIDTokenError(
                f"the completion {text!r} decodes back as {decoded!r} (a WordPiece-style decoder puts spaces between "
                f"tokens): the rewards, which read the decoded text, would not recognise the item"
            )
    return ids


def add_sid_tokens(
    tokenizer,
    catalog_or_sids: ItemCatalog | Iterable[str],
    model=None,
    prompt_suffix: str | None = DEFAULT_PROMPT_SUFFIX,
) -> list[str]:
    """Adds every code of the catalog's SIDs to `tokenizer` as one token each, resizes `model`, and checks the result.

    The codes are added as ordinary added tokens (`special_tokens=False`), not special ones: TRL decodes completions
    with `skip_special_tokens=True`, which would erase special tokens from the text the rewards read. Codes the
    tokenizer already has as single tokens are left alone, so calling this twice adds nothing the second time. With
    a `model`, its embeddings are resized to the new vocabulary when it outgrows them; they are never shrunk, since
    Qwen2 checkpoints carry spare rows beyond `len(tokenizer)` (151,936 for 151,646 tokens) that the new codes may
    fill as they are. New rows get transformers' default initialisation (near the mean embedding, so a pretrained
    model tells the codes apart only after SFT; build a from-scratch model after adding the codes instead). Returns
    the codes that were added, in id order, then runs `check_sid_tokens`, so that a tokenizer on which a code still is
    not one token fails here, not in training.

    Example:
    ```python
    >>> from trl_rere.sid_tokens import add_sid_tokens
    >>> from trl_rere.testing import tiny_causal_lm, train_tokenizer
    >>> tokenizer = train_tokenizer(["### Response:\\n"])
    >>> model = tiny_causal_lm(tokenizer)
    >>> add_sid_tokens(tokenizer, ["<a_1><b_2><c_3>", "<a_1><b_5><c_0>"], model=model)
    ['<a_1>', '<b_2>', '<b_5>', '<c_0>', '<c_3>']
    >>> model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    True
    ```
    """
    sids = list(catalog_or_sids.titles if isinstance(catalog_or_sids, ItemCatalog) else catalog_or_sids)
    vocab = tokenizer.get_vocab()
    missing = [c for c in sid_codes(sids) if c not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=False)
    if model is not None:
        rows = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > rows:
            model.resize_token_embeddings(len(tokenizer))
    check_sid_tokens(tokenizer, sids, prompt_suffix)
    return missing


def add_item_tokens(tokenizer, catalog: ItemCatalog, item_format: str | ItemFormat = "title", model=None) -> list[str]:
    """What a tokenizer needs before it can write the catalog's items in `item_format`: the code tokens of a format
    with a `code_pattern` (semantic IDs, `add_sid_tokens`), nothing for text items. Returns the tokens added.

    Scripts call it for any item format, so that the difference between the formats stays a property of the format.

    Example:
    ```python
    >>> from trl_rere import ItemCatalog
    >>> from trl_rere.sid_tokens import add_item_tokens
    >>> from trl_rere.testing import train_tokenizer
    >>> tokenizer = train_tokenizer(["### Response:\\n", "Red Ball"])
    >>> add_item_tokens(tokenizer, ItemCatalog.from_titles(["Red Ball"]), "title")
    []
    >>> add_item_tokens(tokenizer, ItemCatalog.from_titles(["<a_1><b_2>"]), "sid")
    ['<a_1>', '<b_2>']
    ```
    """
    item_format = get_item_format(item_format)
    if item_format.code_pattern is None:
        return []
    return add_sid_tokens(tokenizer, catalog, model=model, prompt_suffix=item_format.prompt_suffix)
