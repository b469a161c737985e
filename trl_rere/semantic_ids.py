"""Moved: the semantic-ID names now live where their job is. Kept so that `trl_rere.semantic_ids` imports keep working
for one release; import from the new places.

- code tokens (`split_sid`, `sid_codes`, `check_sid_tokens`, `add_sid_tokens`, `SIDTokenError`): `trl_rere.sid_tokens`
- MiniOneRec's layout and prompts (`load_sid_amazon`, `load_sid_split`, `build_sid_prompt`, `sid_prefix_pairs`,
  `synthetic_sid_dataset`, ...): `trl_rere.data`
"""

from .data.pairs import sid_prefix_pairs
from .data.prompts import SID_HISTORY_SEPARATOR, SID_MAX_HISTORY, SID_PROMPT_TEMPLATE, build_sid_prompt
from .data.sids import (
    SID_DATA_HELP,
    SID_REQUIRED_COLUMNS,
    load_sid_amazon,
    load_sid_split,
    read_sid_index,
    read_sid_info,
    sid_data_root,
)
from .data.synthetic import synthetic_sid_dataset
from .sid_tokens import SIDTokenError, add_sid_tokens, check_sid_tokens, sid_codes, split_sid


__all__ = [
    "SIDTokenError",
    "SID_DATA_HELP",
    "SID_HISTORY_SEPARATOR",
    "SID_MAX_HISTORY",
    "SID_PROMPT_TEMPLATE",
    "SID_REQUIRED_COLUMNS",
    "add_sid_tokens",
    "build_sid_prompt",
    "check_sid_tokens",
    "load_sid_amazon",
    "load_sid_split",
    "read_sid_index",
    "read_sid_info",
    "sid_codes",
    "sid_data_root",
    "sid_prefix_pairs",
    "split_sid",
    "synthetic_sid_dataset",
]
