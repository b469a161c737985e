"""The item catalog: titles and the item ids that carry them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


class CatalogError(ValueError):
    """Raised for a malformed catalog; the message names the file and line."""


def locate_utf8_error(path: str | os.PathLike, error: UnicodeDecodeError) -> tuple[int | None, str]:
    """`(line, what)` for a file that is not valid UTF-8: the 1-based line of the first bad byte (None if the file no
    longer has one) and a sentence saying which bytes at which offset of that line.

    A text-mode reader decodes in chunks of several kilobytes, so its `UnicodeDecodeError` knows neither the file nor
    the line; this rescans the file as bytes, line by line. That is exact because a newline byte never occurs inside a
    UTF-8 multi-byte sequence. It only runs once decoding has failed, so valid files are read once.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad = raw[e.start : e.end].hex(" ")
                return lineno, (
                    f"not valid UTF-8 at byte {e.start} of the line (bytes {bad}: {e.reason}); the file must be UTF-8 "
                    f"text (re-encode it from its encoding to UTF-8)"
                )
    return None, f"not valid UTF-8 ({error})"


@dataclass
class ItemCatalog:
    """The set of items a recommender may output, keyed by title.

    Titles are not unique in real catalogs (Amazon Industrial: 3,686 items, 3,646 distinct titles), so each distinct
    title maps to one or more item ids, in file order.

    Example:
    ```python
    >>> from trl_rere import ItemCatalog
    >>> catalog = ItemCatalog.from_titles(["Red Ball", "Blue Car", "Red Ball"])
    >>> catalog.titles
    ['Red Ball', 'Blue Car']
    >>> catalog.item_ids("Red Ball")
    [0, 2]
    >>> from trl_rere.testing import write_amazon_folder
    >>> info = write_amazon_folder("tiny-data") / "info" / "Toys_and_Games_5_2016-10-2018-11.txt"  # title<TAB>item_id
    >>> len(ItemCatalog.from_info_file(info))
    32
    ```
    """

    titles: list[str]
    title_to_item_ids: dict[str, list[int]]
    source: str | None = None
    item_id_to_title: dict[int, str] = field(init=False, repr=False)

    def __post_init__(self):
        if not self.titles:
            raise CatalogError(f"{self.source or 'catalog'}: the catalog is empty")
        self.item_id_to_title = {i: t for t, ids in self.title_to_item_ids.items() for i in ids}
        self._index = {t: k for k, t in enumerate(self.titles)}

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_titles(cls, titles: Iterable[str], item_ids: Sequence[int] | None = None) -> ItemCatalog:
        """Builds a catalog from titles; item ids default to the position of each title."""
        titles = list(titles)
        if item_ids is not None and len(item_ids) != len(titles):
            raise CatalogError(f"got {len(titles)} titles but {len(item_ids)} item ids")
        mapping: dict[str, list[int]] = {}
        for k, title in enumerate(titles):
            if not isinstance(title, str):
                raise CatalogError(f"title {k} is {type(title).__name__}, not str")
            if not title.strip():
                raise CatalogError(f"title {k} is empty")
            mapping.setdefault(title, []).append(k if item_ids is None else int(item_ids[k]))
        return cls(titles=list(mapping), title_to_item_ids=mapping)

    @classmethod
    def from_info_file(cls, path: str | os.PathLike) -> ItemCatalog:
        """Reads a D3/ReRe info file: one item per line, `title<TAB>item_id`; the id is the text after the last tab
        (titles may themselves contain tabs)."""
        path = os.fspath(path)
        mapping: dict[str, list[int]] = {}
        seen_ids: dict[int, int] = {}
        try:
            with open(path, encoding="utf-8") as f:
                lines = list(f)
        except UnicodeDecodeError as e:
            lineno, what = locate_utf8_error(path, e)
            raise CatalogError(f"{path}:{lineno}: {what}" if lineno else f"{path}: {what}") from None
        for lineno, raw in enumerate(lines, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            title, tab, item_id = line.rpartition("\t")
            if not tab:
                raise CatalogError(f"{path}:{lineno}: expected 'title<TAB>item_id', found no tab: {line[:80]!r}")
            if not title.strip():
                raise CatalogError(f"{path}:{lineno}: empty title for item id {item_id!r}")
            try:
                item = int(item_id)
            except ValueError:
                raise CatalogError(
                    f"{path}:{lineno}: item id {item_id!r} after the last tab is not an integer"
                ) from None
            if item in seen_ids:
                raise CatalogError(f"{path}:{lineno}: item id {item} already defined on line {seen_ids[item]}")
            seen_ids[item] = lineno
            mapping.setdefault(title, []).append(item)
        if not mapping:
            raise CatalogError(f"{path}: the catalog is empty (no 'title<TAB>item_id' lines)")
        return cls(titles=list(mapping), title_to_item_ids=mapping, source=path)

    def __repr__(self) -> str:
        # The dataclass repr would print every title (about 600 KB for Amazon Industrial) in logs and tracebacks.
        source = f", source={self.source!r}" if self.source is not None else ""
        return f"{type(self).__name__}({len(self.titles)} titles, {self.num_items} items{source})"

    # -- lookup -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.titles)

    def __contains__(self, title: object) -> bool:
        return title in self._index

    def __iter__(self):
        return iter(self.titles)

    @property
    def num_items(self) -> int:
        """Number of item ids (>= number of distinct titles)."""
        return len(self.item_id_to_title)

    def index(self, title: str) -> int:
        """Position of `title` in `titles` (the title index used by the trie)."""
        return self._index[title]

    def item_ids(self, title: str) -> list[int]:
        return self.title_to_item_ids[title]

    def title_of(self, item_id: int) -> str:
        return self.item_id_to_title[item_id]
