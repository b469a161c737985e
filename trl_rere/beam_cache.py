"""Deprecated path, kept for one release: the shared-prompt beam cache lives in `trl_rere.decoding.beam_cache`."""

from .decoding.beam_cache import SharedPromptLayer, beam_search_cache


__all__ = ["SharedPromptLayer", "beam_search_cache"]
