"""Deprecated path, kept for one release: `TrieScoreRecorder` lives in `trl_rere.decoding.recorders`."""

from .decoding.recorders import TrieScoreRecorder


__all__ = ["TrieScoreRecorder"]
