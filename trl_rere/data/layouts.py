"""The file layouts a dataset comes in, and `load_amazon`, which reads the one an item format names.

Two layouts ship: `"d3"`, the ReRe/D3 title files, and `"minionerec"`, MiniOneRec's semantic-ID files. An item format
names its layout (`ItemFormat.layout`), so the loaders, the scripts' file checks and the synthetic data pick theirs
from the format instead of branching on its name.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from datasets import DatasetDict

from ..catalog import ItemCatalog
from ..item_format import ItemFormat, get_item_format
from .readers import DATA_HELP
from .sids import SID_DATA_HELP, load_sid_amazon
from .synthetic import synthetic_catalog_dataset, synthetic_sid_dataset
from .titles import load_title_amazon


@dataclass(frozen=True)
class Layout:
    """One way of storing a dataset on disk.

    Parameters:
        name (`str`):
            Short name (`"d3"`, `"minionerec"`), the value of `ItemFormat.layout`.
        marker (`str`):
            The folder that marks a dataset's root (`info` for titles, `index` for semantic IDs).
        extra_files (`tuple[str, ...]`):
            Files beside the catalog and the splits, as patterns with `{category}` (the SID index).
        load (`Callable`):
            `load(data_dir, category, splits, **kwargs) -> (catalog, DatasetDict)`.
        synthetic (`Callable`):
            `synthetic(num_items=, num_users=, seed=) -> (catalog, dataset)`: a tiny offline dataset of this layout's
            items.
        help (`str`):
            Where such files come from, for error messages.

    Example:
    ```python
    >>> from trl_rere.data import get_layout
    >>> get_layout("sid").name, get_layout("sid").patterns("Toys_and_Games", ("test",))
    ('minionerec', ['index/Toys_and_Games.index.json', 'info/Toys_and_Games_5_*.txt', 'test/Toys_and_Games_5_*.csv'])
    ```
    """

    name: str
    marker: str
    extra_files: tuple[str, ...]
    load: Callable[..., tuple[ItemCatalog, DatasetDict]]
    synthetic: Callable
    help: str

    def patterns(self, category: str, splits: Sequence[str]) -> list[str]:
        """The glob patterns, relative to the dataset's root, of every file `category` needs for `splits`."""
        escaped = glob.escape(category)
        extra = [pattern.format(category=escaped) for pattern in self.extra_files]
        return extra + [f"info/{escaped}_5_*.txt"] + [f"{glob.escape(s)}/{escaped}_5_*.csv" for s in splits]


LAYOUTS: dict[str, Layout] = {
    "d3": Layout("d3", "info", (), load_title_amazon, synthetic_catalog_dataset, DATA_HELP),
    "minionerec": Layout(
        "minionerec", "index", ("index/{category}.index.json",), load_sid_amazon, synthetic_sid_dataset, SID_DATA_HELP
    ),
}


def get_layout(item_format: str | ItemFormat = "title") -> Layout:
    """The `Layout` the data of `item_format` (a format or its name) comes in."""
    layout = get_item_format(item_format).layout
    if layout not in LAYOUTS:
        raise ValueError(f"item format {get_item_format(item_format).name!r} names the layout {layout!r}; known "
                         f"layouts: {sorted(LAYOUTS)}")
    return LAYOUTS[layout]


def load_amazon(
    data_dir: str | os.PathLike,
    category: str = "Industrial_and_Scientific",
    splits: Sequence[str] = ("train", "valid", "test"),
    *,
    item_format: str | ItemFormat = "title",
    category_name: str | None = None,
    **kwargs,
) -> tuple[ItemCatalog, DatasetDict]:
    """Loads one category's catalog and splits in the layout of `item_format`: `(catalog, DatasetDict)`.

    Titles (`item_format="title"`) come in the D3/ReRe layout, the catalog `info/{category}_5_{dates}.txt` and one CSV
    per split, `{split}/{category}_5_{dates}.csv`, under `data_dir` (or its `amazon/` / `Amazon/` subfolder; see
    `find_category_files` and `load_title_amazon`). The prompts call the items `category_name` when given, else
    `CATEGORY_NAMES[category]`; a category without a known name needs `category_name=` (the original prompts
    pluralize it by appending "s"). Semantic IDs (`item_format="sid"`) come in MiniOneRec's layout, with SID prompts
    and targets (`load_sid_amazon`). Other keyword arguments go to the split loader (`load_amazon_split`,
    `load_sid_split`), e.g. `tokenizer=` and `max_prompt_length=` to drop the oldest history items of prompts that
    would be too long.

    Example:
    ```python
    >>> from trl_rere.data import load_amazon
    >>> from trl_rere.testing import write_amazon_folder, write_minionerec_folder
    >>> _, titles = load_amazon(write_amazon_folder("tiny-data"), "Toys_and_Games", splits=("test",))
    >>> _, sids = load_amazon(write_minionerec_folder("tiny-sid-data"), splits=("test",), item_format="sid")
    >>> titles["test"][0]["target"][:1] != "<", sids["test"][0]["target"][:3]
    (True, '<a_')
    ```
    """
    return get_layout(item_format).load(data_dir, category, splits, category_name=category_name, **kwargs)
