"""Trie-constrained decoding, one module per job:

- `options`: `DecodingOptions`, every knob of a decoding call in one object;
- `tokens`: prompt ids in (`tokenize_prompts`, `left_pad`), completion ids out (`cut_after_eos`);
- `processor`: `TrieLogitsProcessor`, the trie constraint on `generate`;
- `recorders`: `TrieScoreRecorder` and `SequenceLogProbRecorder`, the scores of what was generated;
- `backend`: the contract (`DecodingBackend`, `Completions`) where another backend plugs in;
- `hf_generate`: `HFGenerate`, the reference backend on transformers' `generate` (`beam_cache`: its opt-in cache);
- `search`: the one beam-search core (`beam_search`) that training and evaluation share;
- `groups`: `draw_groups`, the trainer's G items per prompt.
"""

from .backend import INVALID_SCORE, Completions, DecodingBackend
from .beam_cache import SharedPromptLayer, beam_search_cache
from .groups import draw_groups
from .hf_generate import HFGenerate, generate_beams, sample_from_trie
from .options import SAMPLING_STRATEGIES, DecodingOptions
from .processor import AllowedTokens, TrieLogitsProcessor, make_prefix_allowed_tokens_fn
from .recorders import SequenceLogProbRecorder, TrieScoreRecorder
from .search import Beam, RankedBeams, beam_search, collect_beams, constrained_beam_search, eval_mode
from .tokens import cut_after_eos, left_pad, tokenize_prompts


__all__ = [
    "INVALID_SCORE",
    "SAMPLING_STRATEGIES",
    "AllowedTokens",
    "Beam",
    "Completions",
    "DecodingBackend",
    "DecodingOptions",
    "HFGenerate",
    "RankedBeams",
    "SequenceLogProbRecorder",
    "SharedPromptLayer",
    "TrieLogitsProcessor",
    "TrieScoreRecorder",
    "beam_search",
    "beam_search_cache",
    "collect_beams",
    "constrained_beam_search",
    "cut_after_eos",
    "draw_groups",
    "eval_mode",
    "generate_beams",
    "left_pad",
    "make_prefix_allowed_tokens_fn",
    "sample_from_trie",
    "tokenize_prompts",
]
