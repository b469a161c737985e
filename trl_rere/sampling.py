"""Deprecated path, kept for one release: group drawing lives in `trl_rere.decoding` (`groups`, `hf_generate`)."""

from .decoding.groups import draw_groups, insert_ground_truth
from .decoding.hf_generate import sample_from_trie
from .decoding.options import SAMPLING_STRATEGIES
from .decoding.recorders import SequenceLogProbRecorder


__all__ = ["SAMPLING_STRATEGIES", "SequenceLogProbRecorder", "draw_groups", "insert_ground_truth", "sample_from_trie"]
