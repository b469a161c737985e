"""Files <-> datasets: the file layouts (D3/ReRe titles, MiniOneRec semantic IDs), prompts and their length,
training pairs, the SFT view, alignment tasks, tiny synthetic catalogs, and the preparation of raw interactions.

One job per module, imports running one way (`errors`, `readers` and `prompts` at the bottom, `layouts` on top):

- `readers`: CSV and JSON reading with errors naming the file, the row and the line; one category's file set.
- `prompts`: the authors' title prompt, MiniOneRec's SID prompt, and one prompt-length fitter.
- `titles` / `sids`: the two layouts' loaders, side by side.
- `layouts`: which layout an item format's data comes in, and `load_amazon`.
- `pairs`: every (history prefix -> next item) pair of a split, with the title or the SID prompt; `sft`: the
  prompt-completion view for SFT; `synthetic`: tiny offline catalogs; `alignment`: MiniOneRec's alignment tasks
  (item texts -> SFT and RL rows).
- `build_sids`: semantic IDs from item texts (embeddings, residual quantisers, distinct codes) in MiniOneRec's layout.
- `raw_readers` and `prepare`: raw interactions (Amazon Reviews 2018 / 2023 JSON lines, or a user's own table) to
  the D3/ReRe layout, as the authors' `data/process.py` writes it; `raw_synthetic`: generated raw files.

Names are imported on first use, like the package's own (`trl_rere/__init__.py`), so that the preparation command
loads polars and numpy, not `datasets`.
"""

from __future__ import annotations

from .._lazy import lazy_exports


# module -> the names it provides
_API: dict[str, tuple[str, ...]] = {
    "alignment": (
        "ALIGNMENT_TASKS",
        "RL_ALIGNMENT_TASKS",
        "AlignmentTask",
        "ItemTexts",
        "alignment_prompts",
        "alignment_sft_dataset",
        "get_alignment_task",
        "load_item_texts",
        "mix_rl_tasks",
        "mix_sft_tasks",
        "read_item_texts",
    ),
    "build_sids": ("SIDStats", "build_semantic_ids", "make_sid_dataset"),
    "layouts": ("LAYOUTS", "Layout", "get_layout", "load_amazon"),
    "pairs": ("prefix_pairs", "sid_prefix_pairs", "title_prefix_pairs"),
    "prepare": ("PrepareConfig", "prepare_amazon2018", "prepare_amazon2023", "prepare_table"),
    "prompts": (
        "CATEGORY_NAMES",
        "DEFAULT_INSTRUCTIONS",
        "DEFAULT_PROMPT_TEMPLATE",
        "HISTORY_SEPARATOR",
        "MAX_HISTORY",
        "SID_HISTORY_SEPARATOR",
        "SID_MAX_HISTORY",
        "SID_PROMPT_TEMPLATE",
        "build_prompt",
        "build_sid_prompt",
        "category_name",
        "fit_prompt_length",
        "format_history",
        "instruction_index",
        "prompt_token_count",
        "prompt_token_counts",
    ),
    "raw_readers": ("PreparationError",),
    "readers": ("CATEGORY_FILE_MARKER", "DATA_HELP", "SPLIT_FEATURES", "DataError", "find_category_files"),
    "sft": ("sft_dataset",),
    "sids": ("SID_DATA_HELP", "load_sid_amazon", "load_sid_split", "read_sid_index", "read_sid_info"),
    "synthetic": ("synthetic_catalog_dataset", "synthetic_sid_dataset"),
    "titles": ("REQUIRED_COLUMNS", "load_amazon_split", "load_title_amazon"),
}
_MODULE_OF, __getattr__, __dir__ = lazy_exports(__name__, _API, globals())

__all__ = sorted(_MODULE_OF)

