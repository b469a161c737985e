"""trl-rere: ReRe (Reinforced Preference Optimization for Recommendation) as a plugin for Hugging Face TRL."""

__version__ = "0.1.0"

from .catalog import CatalogError, ItemCatalog
from .config import ReReConfig
from .decoding import (
    Beam,
    RankedBeams,
    TrieLogitsProcessor,
    TrieScoreRecorder,
    constrained_beam_search,
    draw_groups,
    make_prefix_allowed_tokens_fn,
)
from .evaluation import RankingEvalCallback, evaluate_ranking
from .item_format import ItemFormat, get_item_format
from .metrics import ranking_metrics
from .rewards import collaborative_reward, ranking_reward, rule_reward, semantic_reward
from .data import (
    DataError,
    build_prompt,
    build_sid_prompt,
    load_amazon,
    load_amazon_split,
    load_sid_amazon,
    sft_dataset,
    sid_prefix_pairs,
    synthetic_catalog_dataset,
    synthetic_sid_dataset,
)
from .sid_tokens import SIDTokenError, add_sid_tokens, check_sid_tokens
from .trainer import ReReTrainer
from .trie import ItemTrie, TrieBoundaryError


__all__ = [
    "Beam",
    "CatalogError",
    "DataError",
    "ItemCatalog",
    "ItemFormat",
    "ItemTrie",
    "RankedBeams",
    "ReReConfig",
    "RankingEvalCallback",
    "ReReTrainer",
    "SIDTokenError",
    "TrieBoundaryError",
    "TrieLogitsProcessor",
    "TrieScoreRecorder",
    "add_sid_tokens",
    "build_prompt",
    "build_sid_prompt",
    "check_sid_tokens",
    "collaborative_reward",
    "constrained_beam_search",
    "draw_groups",
    "evaluate_ranking",
    "get_item_format",
    "load_amazon",
    "load_amazon_split",
    "load_sid_amazon",
    "make_prefix_allowed_tokens_fn",
    "ranking_metrics",
    "ranking_reward",
    "rule_reward",
    "semantic_reward",
    "sft_dataset",
    "sid_prefix_pairs",
    "synthetic_catalog_dataset",
    "synthetic_sid_dataset",
]
