"""trl-rere: ReRe (Reinforced Preference Optimization for Recommendation) as a plugin for Hugging Face TRL.

The names below are the user API: the trainer and its config, the catalog and its trie, the data loaders and
preparation, decoding, evaluation and the rewards. Everything else is reachable from its own module (`trl_rere.data`,
`trl_rere.decoding`, `trl_rere.sid_tokens`, ...). Names are imported on first use, as transformers does, so that
`import trl_rere` (and the data commands, which need no torch or TRL) start in a fraction of a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports


__version__ = "0.1.0"

# module -> the public names it provides
_API: dict[str, tuple[str, ...]] = {
    "catalog": ("CatalogError", "ItemCatalog"),
    "config": ("ReReConfig",),
    "data": (
        "DataError",
        "PreparationError",
        "PrepareConfig",
        "build_prompt",
        "load_amazon",
        "load_amazon_split",
        "prepare_amazon2018",
        "prepare_amazon2023",
        "prepare_table",
        "sft_dataset",
        "synthetic_catalog_dataset",
        "synthetic_sid_dataset",
    ),
    "decoding": ("TrieLogitsProcessor", "constrained_beam_search", "make_prefix_allowed_tokens_fn"),
    "evaluation": ("RankingEvalCallback", "evaluate_ranking"),
    "item_format": ("ItemFormat", "get_item_format"),
    "metrics": ("ranking_metrics",),
    "rewards": ("collaborative_reward", "ranking_reward", "rule_reward", "semantic_reward"),
    "sid_tokens": ("SIDTokenError", "add_sid_tokens"),
    "trainer": ("ReReTrainer",),
    "trie": ("ItemTrie", "TrieBoundaryError"),
}
_MODULE_OF, __getattr__, __dir__ = lazy_exports(__name__, _API, globals())

# written out (not derived from _API) so that linters and IDEs read it; a test keeps the two equal
__all__ = [
    "CatalogError",
    "DataError",
    "ItemCatalog",
    "ItemFormat",
    "ItemTrie",
    "PreparationError",
    "PrepareConfig",
    "RankingEvalCallback",
    "ReReConfig",
    "ReReTrainer",
    "SIDTokenError",
    "TrieBoundaryError",
    "TrieLogitsProcessor",
    "add_sid_tokens",
    "build_prompt",
    "collaborative_reward",
    "constrained_beam_search",
    "evaluate_ranking",
    "get_item_format",
    "load_amazon",
    "load_amazon_split",
    "make_prefix_allowed_tokens_fn",
    "prepare_amazon2018",
    "prepare_amazon2023",
    "prepare_table",
    "ranking_metrics",
    "ranking_reward",
    "rule_reward",
    "semantic_reward",
    "sft_dataset",
    "synthetic_catalog_dataset",
    "synthetic_sid_dataset",
]


if TYPE_CHECKING:  # for type checkers and IDEs, which do not run __getattr__
    from .catalog import CatalogError, ItemCatalog
    from .config import ReReConfig
    from .data import (
        DataError,
        PreparationError,
        PrepareConfig,
        build_prompt,
        load_amazon,
        load_amazon_split,
        prepare_amazon2018,
        prepare_amazon2023,
        prepare_table,
        sft_dataset,
        synthetic_catalog_dataset,
        synthetic_sid_dataset,
    )
    from .decoding import TrieLogitsProcessor, constrained_beam_search, make_prefix_allowed_tokens_fn
    from .evaluation import RankingEvalCallback, evaluate_ranking
    from .item_format import ItemFormat, get_item_format
    from .metrics import ranking_metrics
    from .rewards import collaborative_reward, ranking_reward, rule_reward, semantic_reward
    from .sid_tokens import SIDTokenError, add_sid_tokens
    from .trainer import ReReTrainer
    from .trie import ItemTrie, TrieBoundaryError
