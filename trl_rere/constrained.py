"""Deprecated path, kept for one release: trie-constrained decoding lives in `trl_rere.decoding`."""

from .decoding.backend import INVALID_SCORE
from .decoding.hf_generate import generate_beams
from .decoding.processor import AllowedTokens, TrieLogitsProcessor, make_prefix_allowed_tokens_fn
from .decoding.search import Beam, RankedBeams, collect_beams, constrained_beam_search
from .decoding.tokens import left_pad, tokenize_prompts


__all__ = [
    "INVALID_SCORE",
    "AllowedTokens",
    "Beam",
    "RankedBeams",
    "TrieLogitsProcessor",
    "collect_beams",
    "constrained_beam_search",
    "generate_beams",
    "left_pad",
    "make_prefix_allowed_tokens_fn",
    "tokenize_prompts",
]
