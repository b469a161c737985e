"""Token trie of the catalog's titles, stored as flat arrays.

Nodes are numbered breadth-first (depth by depth) and, within a depth, in lexicographic order of their token paths.
With that numbering the children of every node are one contiguous, token-sorted run of node ids, so the whole trie is
four arrays (`node_token`, `first_child`, `num_children`, `node_title`) and a transition `(node, token) -> child` is one
`searchsorted` over the sorted edge keys `parent * vocab + token`. Building it is a sort of the tokenized titles plus a
few vectorised passes per depth: no per-node Python objects, so a million titles fit in seconds and a few hundred MB.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from .catalog import ItemCatalog
from .item_format import DEFAULT_COMPLETION_TEMPLATE, DEFAULT_PROMPT_SUFFIX, ItemFormat, get_item_format
from .sid_tokens import check_sid_tokens


class TrieBoundaryError(ValueError):
    """The tokenization of a completion is not stable at the prompt boundary."""


def tokenize_completions(
    texts: Sequence[str], tokenizer, prompt_suffix: str | None, batch_size: int = 65536
) -> list[list[int]]:
    """Tokenizes each completion as it is tokenized right after a prompt ending in `prompt_suffix`.

    BPE and SentencePiece tokenizers merge across the prompt/completion boundary and add word-start markers, so a
    completion tokenized alone can differ from the tokens the model sees after the prompt. We tokenize
    `prompt_suffix + completion` and keep what follows the suffix's own tokens, after checking that the suffix
    tokenizes identically in both cases (otherwise the boundary is unstable and we say so).
    """
    if prompt_suffix:
        suffix_ids = tokenizer(prompt_suffix, add_special_tokens=False)["input_ids"]
        n = len(suffix_ids)
    else:
        suffix_ids, n = [], 0
    out: list[list[int]] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        enc = tokenizer([(prompt_suffix or "") + t for t in chunk], add_special_tokens=False)["input_ids"]
        for k, ids in enumerate(enc):
            if ids[:n] != suffix_ids:
                raise TrieBoundaryError(
                    f"the prompt ending {prompt_suffix!r} tokenizes as {suffix_ids} alone but as {ids[:n]} before the "
                    f"completion {chunk[k]!r}: tokens merge across the prompt/completion boundary. End prompts with a "
                    f"separator that cannot merge with the completion (e.g. a newline) and pass it as `prompt_suffix`."
                )
            out.append(ids[n:])
    return out


class ItemTrie:
    """The token trie of every catalog item, as generated after the prompt.

    Each path from the root to a leaf is the token sequence of one item's completion (`item_format.render(title)`,
    see `trl_rere.item_format`) followed by EOS, tokenized in the context of the prompt's fixed ending
    (`item_format.prompt_suffix`). An item that is a prefix of another stays reachable because every path ends in EOS.
    Built from raw token sequences, `completion_template` / `prompt_suffix` (or an `item_format`) say how they were
    written.

    Example:
    ```python
    >>> from trl_rere import ItemCatalog, ItemTrie
    >>> from trl_rere.testing import train_tokenizer
    >>> catalog = ItemCatalog.from_titles(["Red Ball", "Red Ball Pit", "Blue Car"])
    >>> tokenizer = train_tokenizer(catalog.titles)
    >>> trie = ItemTrie.from_catalog(catalog, tokenizer)  # completions '"{title}"\\n' + EOS after "### Response:\\n"
    >>> trie.lookup(trie.title_token_ids(0))  # -> title index 0
    0
    >>> tokenizer.decode(trie.title_token_ids(1))
    '"Red Ball Pit"\\n<|endoftext|>'
    >>> len(trie), trie.max_length == max(len(trie.title_token_ids(i)) for i in range(3))
    (3, True)
    ```
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[int]],
        *,
        catalog: ItemCatalog | None = None,
        eos_token_id: int | None = None,
        vocab_size: int | None = None,
        completion_template: str = DEFAULT_COMPLETION_TEMPLATE,
        prompt_suffix: str | None = DEFAULT_PROMPT_SUFFIX,
        item_format: ItemFormat | None = None,
    ):
        if not sequences:
            raise ValueError("cannot build a trie from an empty list of titles")
        self.catalog = catalog
        # without a catalog (token sequences only) titles are known by their index
        self.titles = catalog.titles if catalog is not None else None
        self.eos_token_id = eos_token_id
        if item_format is None:
            item_format = ItemFormat("title", completion_template, prompt_suffix)
        self.item_format = item_format
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        if (lengths == 0).any():
            bad = int(np.argmax(lengths == 0))
            raise ValueError(f"title {bad} tokenizes to an empty sequence")
        max_len = int(lengths.max())
        # Tokens shifted by +1 so that 0 pads short rows and sorts before every real token: a prefix sorts first.
        # int32 halves the largest temporary of a million-title build; token ids stay far below 2**31.
        mat = np.zeros((len(sequences), max_len), dtype=np.int32)
        flat = np.fromiter((t for s in sequences for t in s), dtype=np.int64, count=int(lengths.sum()))
        if flat.min() < 0:
            raise ValueError("token ids must be non-negative")
        self.vocab_size = int(vocab_size if vocab_size is not None else flat.max() + 1)
        if flat.max() >= self.vocab_size:
            raise ValueError(f"token id {int(flat.max())} is outside the vocabulary of size {self.vocab_size}")
        mat[np.arange(max_len)[None, :] < lengths[:, None]] = flat + 1
        self._build(mat, lengths)

    # -- construction -------------------------------------------------------------------------------------------
    def _build(self, mat: np.ndarray, lengths: np.ndarray) -> None:
        n, max_len = mat.shape
        order = np.lexsort(mat.T[::-1])
        mat, lengths = mat[order], lengths[order]
        # lcp[i]: length of the common prefix of sorted rows i-1 and i (0 for the first row).
        diff = np.ones((n, max_len), dtype=bool)
        diff[1:] = mat[1:] != mat[:-1]
        lcp = np.where(diff.any(axis=1), diff.argmax(axis=1), max_len)
        lcp[0] = 0
        # Distinct titles can share tokens when the tokenizer normalises text (lowercases, folds accents): keep the
        # first of each run of identical rows and resolve the others to it.
        same = np.zeros(n, dtype=bool)
        same[1:] = ~diff[1:].any(axis=1)
        rep = np.maximum.accumulate(np.where(same, 0, np.arange(n)))
        self.collisions = {int(order[i]): int(order[rep[i]]) for i in np.nonzero(same)[0]}
        if self.collisions:
            a, b = next(iter(self.collisions.items()))
            warnings.warn(
                f"{len(self.collisions)} titles have exactly the same tokens as another title (a normalising tokenizer "
                f"or duplicate token sequences) and are merged in the trie, e.g. title {a} into title {b}.",
                stacklevel=3,
            )
        num_sequences = n
        keep = ~same
        mat, lengths, order, lcp = mat[keep], lengths[keep], order[keep], lcp[keep]
        n = len(mat)
        node_token = [np.zeros(1, dtype=np.int64)]
        parent = [np.full(1, -1, dtype=np.int64)]
        prev_rows = np.zeros(1, dtype=np.int64)  # rows that created the nodes of the previous depth
        prev_ids = np.zeros(1, dtype=np.int64)  # ... and those nodes' ids (depth 0: the root, "created" by row 0)
        next_id = 1
        leaf_nodes = np.empty(n, dtype=np.int64)
        for d in range(max_len):
            # Row i creates the node for its prefix of length d+1 iff it diverges from row i-1 at or before d.
            rows = np.nonzero((lcp <= d) & (lengths > d))[0]
            ids = np.arange(next_id, next_id + len(rows), dtype=np.int64)
            next_id += len(rows)
            # The parent is the depth-d node created by the latest row at or before this one (rows are sorted).
            parent_pos = np.searchsorted(prev_rows, rows, side="right") - 1
            parent.append(prev_ids[parent_pos])
            node_token.append(mat[rows, d].astype(np.int64) - 1)
            ends = lengths[rows] == d + 1
            leaf_nodes[rows[ends]] = ids[ends]
            prev_rows, prev_ids = rows, ids
        self.node_token = np.concatenate(node_token)
        self.node_parent = np.concatenate(parent)
        num_nodes = len(self.node_token)
        self.num_children = np.bincount(self.node_parent[1:], minlength=num_nodes).astype(np.int64)
        self.first_child = np.zeros(num_nodes, dtype=np.int64)
        # Children of node p are the contiguous ids [first_child[p], first_child[p] + num_children[p]).
        self.first_child[:] = np.concatenate([[1], 1 + np.cumsum(self.num_children)[:-1]])
        self.node_title = np.full(num_nodes, -1, dtype=np.int64)
        self.node_title[leaf_nodes] = order
        self.title_leaf = np.full(num_sequences, -1, dtype=np.int64)
        self.title_leaf[order] = leaf_nodes
        for dropped, kept in self.collisions.items():
            self.title_leaf[dropped] = self.title_leaf[kept]
        # Edge e leads to node e + 1; edge keys are sorted because ids follow (parent, token) order.
        self.edge_keys = self.node_parent[1:] * self.vocab_size + self.node_token[1:]
        self.max_length = int(lengths.max())
        self.num_titles = n
        self._device_arrays: dict = {}

    @classmethod
    def from_catalog(
        cls,
        catalog: ItemCatalog,
        tokenizer,
        completion_template: str | None = None,
        prompt_suffix: str | None = ...,
        add_eos: bool = True,
        item_format: str | ItemFormat = "title",
    ) -> ItemTrie:
        """Tokenizes every item of `catalog` as a completion after the prompt's fixed ending and builds the trie.

        The completion and the ending come from `item_format` (`"title"`, `"sid"` or an `ItemFormat`);
        `completion_template` / `prompt_suffix` override them."""
        item_format = get_item_format(item_format, completion_template, prompt_suffix)
        if item_format.code_pattern is not None:
            # a code split into several tokens would branch the trie mid-code; say so, naming the code
            check_sid_tokens(tokenizer, catalog, item_format.prompt_suffix)
        eos = tokenizer.eos_token_id
        if add_eos and eos is None:
            raise ValueError("the tokenizer has no eos_token_id; set one or pass add_eos=False")
        texts = [item_format.render(t) for t in catalog.titles]
        seqs = tokenize_completions(texts, tokenizer, item_format.prompt_suffix)
        if add_eos:
            for s in seqs:
                s.append(eos)
        return cls(
            seqs,
            catalog=catalog,
            eos_token_id=eos,
            vocab_size=max(len(tokenizer), getattr(tokenizer, "vocab_size", 0) or 0),
            item_format=item_format,
        )

    @property
    def completion_template(self) -> str:
        return self.item_format.completion_template

    @property
    def prompt_suffix(self) -> str | None:
        return self.item_format.prompt_suffix

    # -- queries ------------------------------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return len(self.node_token)

    def __len__(self) -> int:
        return self.num_titles

    def children(self, node: int) -> np.ndarray:
        """Tokens allowed after the path that leads to `node`."""
        start = self.first_child[node]
        return self.node_token[start : start + self.num_children[node]]

    def step(self, node: int, token: int) -> int:
        """The child of `node` reached by `token`, or -1."""
        if node < 0:
            return -1
        start = int(self.first_child[node])
        stop = start + int(self.num_children[node])
        k = start + int(np.searchsorted(self.node_token[start:stop], token))
        return k if k < stop and self.node_token[k] == token else -1

    def walk(self, token_ids: Sequence[int]) -> int:
        """Node reached from the root along `token_ids`, or -1 if the path leaves the trie."""
        node = 0
        for t in token_ids:
            node = self.step(node, int(t))
            if node < 0:
                return -1
        return node

    def lookup(self, token_ids: Sequence[int]) -> int:
        """Title index whose completion is exactly `token_ids` (EOS included), or -1."""
        node = self.walk(token_ids)
        return int(self.node_title[node]) if node >= 0 else -1

    def title_token_ids(self, title_index: int) -> list[int]:
        """Completion tokens of one title, read back from the trie."""
        node = int(self.title_leaf[title_index])
        if node < 0:
            raise KeyError(title_index)
        path = []
        while node > 0:
            path.append(int(self.node_token[node]))
            node = int(self.node_parent[node])
        return path[::-1]

    def title(self, title_index: int) -> str:
        return self.titles[title_index] if self.titles is not None else str(title_index)

    def device_arrays(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The arrays the logits processor needs, as tensors on `device` (cached per device)."""
        key = str(device)
        if key not in self._device_arrays:
            self._device_arrays[key] = {
                name: torch.as_tensor(getattr(self, name), device=device)
                for name in ("node_token", "first_child", "num_children", "node_title", "edge_keys")
            }
        return self._device_arrays[key]

    def nbytes(self) -> int:
        return sum(
            getattr(self, a).nbytes
            for a in ("node_token", "node_parent", "first_child", "num_children", "node_title", "edge_keys")
        )
