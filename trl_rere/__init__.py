"""trl-rere: ReRe (Reinforced Preference Optimization for Recommendation) as a plugin for Hugging Face TRL."""

__version__ = "0.1.0"

from .catalog import CatalogError, ItemCatalog
from .config import ReReConfig
from .constrained import (
    Beam,
    RankedBeams,
    TrieLogitsProcessor,
    constrained_beam_search,
    make_prefix_allowed_tokens_fn,
)
from .rewards import collaborative_reward, ranking_reward, rule_reward, semantic_reward
from .trainer import ReReTrainer
from .trie import ItemTrie, TrieBoundaryError


__all__ = [
    "Beam",
    "CatalogError",
    "ItemCatalog",
    "ItemTrie",
    "RankedBeams",
    "ReReConfig",
    "ReReTrainer",
    "TrieBoundaryError",
    "TrieLogitsProcessor",
    "collaborative_reward",
    "constrained_beam_search",
    "make_prefix_allowed_tokens_fn",
    "ranking_reward",
    "rule_reward",
    "semantic_reward",
]
