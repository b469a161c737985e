"""Files <-> datasets: the file layouts (D3/ReRe titles, MiniOneRec semantic IDs), prompts and their length,
training pairs, the SFT view and tiny synthetic catalogs.

One job per module, imports running one way (`readers` and `prompts` at the bottom, `layouts` on top):

- `readers`: CSV and JSON reading with errors naming the file, the row and the line; one category's file set.
- `prompts`: the authors' title prompt, MiniOneRec's SID prompt, and one prompt-length fitter.
- `titles` / `sids`: the two layouts' loaders, side by side.
- `layouts`: which layout an item format's data comes in, and `load_amazon`.
- `pairs`: every (history prefix -> next item) pair of a split, with the title or the SID prompt; `sft`: the
  prompt-completion view for SFT; `synthetic`: tiny offline catalogs; `alignment`: MiniOneRec's alignment tasks
  (item texts -> SFT and RL rows).
"""

from .alignment import (
    ALIGNMENT_TASKS,
    RL_ALIGNMENT_TASKS,
    AlignmentTask,
    ItemTexts,
    alignment_prompts,
    alignment_sft_dataset,
    get_alignment_task,
    load_item_texts,
    mix_rl_tasks,
    mix_sft_tasks,
    read_item_texts,
)
from .layouts import LAYOUTS, Layout, get_layout, load_amazon
from .pairs import prefix_pairs, sid_prefix_pairs, title_prefix_pairs
from .prepare import PrepareConfig, prepare_amazon2018, prepare_amazon2023, prepare_table
from .prompts import (
    CATEGORY_NAMES,
    DEFAULT_INSTRUCTIONS,
    DEFAULT_PROMPT_TEMPLATE,
    HISTORY_SEPARATOR,
    MAX_HISTORY,
    SID_HISTORY_SEPARATOR,
    SID_MAX_HISTORY,
    SID_PROMPT_TEMPLATE,
    build_prompt,
    build_sid_prompt,
    category_name,
    fit_prompt_length,
    format_history,
    instruction_index,
    prompt_token_count,
    prompt_token_counts,
)
from .raw_readers import PreparationError
from .readers import CATEGORY_FILE_MARKER, DATA_HELP, SPLIT_FEATURES, DataError, find_category_files
from .sft import sft_dataset
from .sids import SID_DATA_HELP, load_sid_amazon, load_sid_split, read_sid_index, read_sid_info
from .synthetic import synthetic_catalog_dataset, synthetic_sid_dataset
from .titles import REQUIRED_COLUMNS, load_amazon_split, load_title_amazon


__all__ = [
    "ALIGNMENT_TASKS",
    "AlignmentTask",
    "ItemTexts",
    "RL_ALIGNMENT_TASKS",
    "alignment_prompts",
    "alignment_sft_dataset",
    "get_alignment_task",
    "load_item_texts",
    "mix_rl_tasks",
    "mix_sft_tasks",
    "read_item_texts",
    "CATEGORY_FILE_MARKER",
    "CATEGORY_NAMES",
    "DATA_HELP",
    "DEFAULT_INSTRUCTIONS",
    "DEFAULT_PROMPT_TEMPLATE",
    "DataError",
    "HISTORY_SEPARATOR",
    "LAYOUTS",
    "Layout",
    "MAX_HISTORY",
    "PreparationError",
    "PrepareConfig",
    "REQUIRED_COLUMNS",
    "SID_DATA_HELP",
    "SID_HISTORY_SEPARATOR",
    "SID_MAX_HISTORY",
    "SID_PROMPT_TEMPLATE",
    "SPLIT_FEATURES",
    "build_prompt",
    "build_sid_prompt",
    "category_name",
    "find_category_files",
    "fit_prompt_length",
    "format_history",
    "get_layout",
    "instruction_index",
    "load_amazon",
    "load_amazon_split",
    "load_sid_amazon",
    "load_sid_split",
    "load_title_amazon",
    "prepare_amazon2018",
    "prepare_amazon2023",
    "prepare_table",
    "prompt_token_count",
    "prefix_pairs",
    "prompt_token_count",
    "prompt_token_counts",
    "read_sid_index",
    "read_sid_info",
    "sft_dataset",
    "sid_prefix_pairs",
    "synthetic_catalog_dataset",
    "synthetic_sid_dataset",
    "title_prefix_pairs",
]
