"""ItemCatalog parsing and the array ItemTrie: construction, round trips, boundary checks, the real Toys catalog."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from rere_test_utils import CATALOG_TITLES, PROMPT_SUFFIX, TITLE_ALPHABET, get_tokenizer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trl_rere.catalog import CatalogError, ItemCatalog
from trl_rere.testing import TOKENIZER_KINDS, train_tokenizer
from trl_rere.trie import ItemTrie, TrieBoundaryError, tokenize_completions


def completion(title: str) -> str:
    return f'"{title}"\n'


# ===================================================================================================================
# ItemCatalog
# ===================================================================================================================
def test_catalog_from_titles_duplicates_map_to_several_ids():
    catalog = ItemCatalog.from_titles(["Red Ball", "Blue Car", "Red Ball", "Kite", "Red Ball"])
    assert catalog.titles == ["Red Ball", "Blue Car", "Kite"]
    assert len(catalog) == 3
    assert catalog.num_items == 5
    assert catalog.item_ids("Red Ball") == [0, 2, 4]
    assert catalog.item_ids("Kite") == [3]
    assert catalog.index("Kite") == 2
    assert catalog.title_of(4) == "Red Ball"
    assert "Blue Car" in catalog and "Green Car" not in catalog
    assert list(catalog) == catalog.titles


def test_catalog_from_titles_with_item_ids():
    catalog = ItemCatalog.from_titles(["a", "b", "a"], item_ids=[10, 20, 30])
    assert catalog.item_ids("a") == [10, 30]
    assert catalog.title_of(20) == "b"
    with pytest.raises(CatalogError, match="item ids"):
        ItemCatalog.from_titles(["a", "b"], item_ids=[1])
    with pytest.raises(CatalogError, match="empty"):
        ItemCatalog.from_titles(["a", "   "])
    with pytest.raises(CatalogError, match="empty"):
        ItemCatalog.from_titles([])


def write(tmp_path, text: str, name: str = "info.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_catalog_from_info_file(tmp_path):
    path = write(
        tmp_path,
        "Red Ball\t0\n"
        "Tab\tInside\tTitle\t7\n"  # the id is after the LAST tab; the title keeps its tabs
        "\n"  # blank lines are skipped
        "Red Ball\t3\r\n"  # duplicate title, CRLF line ending
        'Crayola "Washable" Markers\t12\n'
        "Café Über – 日本 🎯\t5",  # unicode, no trailing newline
    )
    catalog = ItemCatalog.from_info_file(path)
    assert catalog.titles == ["Red Ball", "Tab\tInside\tTitle", 'Crayola "Washable" Markers', "Café Über – 日本 🎯"]
    assert catalog.item_ids("Red Ball") == [0, 3]
    assert catalog.item_ids("Tab\tInside\tTitle") == [7]
    assert catalog.title_of(5) == "Café Über – 日本 🎯"
    assert catalog.num_items == 5
    assert catalog.source == str(path)


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("Red Ball\t0\nno tab here\n", 2, "no tab"),
        ("Red Ball\t0\n\t1\n", 2, "empty title"),
        ("Red Ball\t0\n   \t1\n", 2, "empty title"),
        ("Red Ball\t0\nBlue Car\tB00X\n", 2, "not an integer"),
        ("Red Ball\t0\nBlue Car\t1.5\n", 2, "not an integer"),
        ("Red Ball\t0\nBlue Car\t\n", 2, "not an integer"),
        ("Red Ball\t0\n\nBlue Car\t1\nKite\t0\n", 4, "already defined on line 1"),
    ],
)
def test_catalog_errors_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(CatalogError, match=message) as info:
        ItemCatalog.from_info_file(path)
    assert f"{path}:{line}:" in str(info.value)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_catalog_empty_file(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(CatalogError, match="empty") as info:
        ItemCatalog.from_info_file(path)
    assert str(path) in str(info.value)


def test_catalog_is_a_value_error(tmp_path):
    # Callers can catch the generic ValueError.
    with pytest.raises(ValueError):
        ItemCatalog.from_info_file(write(tmp_path, "no tab\n"))


@pytest.mark.parametrize(
    "data, line, offset, bad",
    [
        (b"Red Ball\t0\nCaf\xe9 Noir\t1\nKite\t2\n", 2, 3, "e9"),  # Latin-1, not UTF-8
        (b"Red Ball\t0\nKite\t2\n\xff\t3\n", 3, 0, "ff"),
        ("Café\t0\n".encode() * 5000 + b"Kite\t1\n\xc3", 5002, 0, "c3"),  # past the reader's first chunk, truncated
    ],
)
def test_catalog_non_utf8_names_file_line_and_byte(tmp_path, data, line, offset, bad):
    path = tmp_path / "Toys_and_Games_5_x.txt"
    path.write_bytes(data)
    with pytest.raises(CatalogError) as info:
        ItemCatalog.from_info_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}:{line}: not valid UTF-8 at byte {offset} of the line (bytes {bad}")


def test_catalog_repr_is_one_short_line(tmp_path):
    catalog = ItemCatalog.from_titles(["Red Ball", "Blue Car", "Red Ball"])
    assert repr(catalog) == "ItemCatalog(2 titles, 3 items)"
    path = write(tmp_path, "".join(f"Title number {i}\t{i}\n" for i in range(5000)))
    assert repr(ItemCatalog.from_info_file(path)) == f"ItemCatalog(5000 titles, 5000 items, source={str(path)!r})"


def test_real_toys_catalog(toys_info_path):
    catalog = ItemCatalog.from_info_file(toys_info_path)
    assert catalog.num_items == 11_252
    assert len(catalog) == 11_198
    with_tab = [t for t in catalog.titles if "\t" in t]
    assert len(with_tab) == 2
    assert sum(len(catalog.item_ids(t)) for t in catalog.titles) == catalog.num_items
    assert all(catalog.title_of(i) == t for t in with_tab for i in catalog.item_ids(t))
    assert repr(catalog) == f"ItemCatalog(11198 titles, 11252 items, source={str(toys_info_path)!r})"


# ===================================================================================================================
# ItemTrie: structure
# ===================================================================================================================
ARRAYS = ("node_token", "node_parent", "first_child", "num_children", "node_title", "edge_keys")


def check_structure(trie: ItemTrie) -> None:
    """Invariants of the compact representation."""
    n = trie.num_nodes
    for name in ARRAYS:
        arr = getattr(trie, name)
        assert isinstance(arr, np.ndarray) and arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer), name
    assert len(trie.node_token) == len(trie.node_parent) == len(trie.first_child) == n
    assert len(trie.num_children) == len(trie.node_title) == n
    assert len(trie.edge_keys) == n - 1
    assert trie.nbytes() == sum(getattr(trie, a).nbytes for a in ARRAYS)
    # No per-node Python containers: the only dicts are the (small) collision map and the device-tensor cache.
    for name, value in vars(trie).items():
        if isinstance(value, (dict, list, set, tuple)) and name not in ("collisions", "_device_arrays", "titles"):
            assert len(value) < n, f"{name} is a per-node Python container"
    # Edges sorted by (parent, token): one searchsorted finds any transition; node e+1 is reached by edge e.
    assert np.all(np.diff(trie.edge_keys) > 0)
    np.testing.assert_array_equal(trie.edge_keys // trie.vocab_size, trie.node_parent[1:])
    np.testing.assert_array_equal(trie.edge_keys % trie.vocab_size, trie.node_token[1:])
    # Children are contiguous runs.
    internal = np.nonzero(trie.num_children)[0]
    for p in internal[:200]:
        kids = np.arange(trie.first_child[p], trie.first_child[p] + trie.num_children[p])
        assert np.all(trie.node_parent[kids] == p)
    # Leaves are exactly the title nodes, reached by EOS.
    leaves = trie.num_children == 0  # the root always has children: every trie holds at least one title
    np.testing.assert_array_equal(leaves, trie.node_title >= 0)
    if trie.eos_token_id is not None:
        assert np.all(trie.node_token[leaves] == trie.eos_token_id)
    assert int((trie.node_title >= 0).sum()) == trie.num_titles


def test_trie_small_catalog_structure_and_prefix_titles():
    tok = get_tokenizer("bpe")
    catalog = ItemCatalog.from_titles(CATALOG_TITLES)
    trie = ItemTrie.from_catalog(catalog, tok)
    check_structure(trie)
    assert len(trie) == len(catalog)
    assert trie.prompt_suffix == PROMPT_SUFFIX
    eos = tok.eos_token_id
    short, long = catalog.index("Red Ball"), catalog.index("Red Ball Pit")
    short_ids, long_ids = trie.title_token_ids(short), trie.title_token_ids(long)
    assert trie.lookup(short_ids) == short and trie.lookup(long_ids) == long
    # The completions share the path of '"Red Ball' and then branch (closing quote vs ' Pit').
    shared = tok('"Red Ball', add_special_tokens=False)["input_ids"]
    assert short_ids[: len(shared)] == long_ids[: len(shared)] == shared
    assert len(trie.children(trie.walk(shared))) >= 2
    # Paths off the trie.
    assert trie.lookup(short_ids[:-1]) == -1
    assert trie.walk([eos]) == -1
    assert trie.step(-1, eos) == -1
    assert trie.lookup(long_ids + [eos]) == -1


def test_prefix_title_at_token_level():
    # Without a closing delimiter "Red Ball" is a token-level prefix of "Red Ball Pit": only EOS tells them apart.
    tok = get_tokenizer("bpe")
    eos = tok.eos_token_id
    catalog = ItemCatalog.from_titles(["Red Ball Pit", "Red Ball", "Red"])
    trie = ItemTrie.from_catalog(catalog, tok, completion_template="{title}", prompt_suffix=None)
    check_structure(trie)
    ids = {t: trie.title_token_ids(catalog.index(t)) for t in catalog.titles}
    assert ids["Red Ball Pit"][: len(ids["Red Ball"]) - 1] == ids["Red Ball"][:-1]
    node = trie.walk(ids["Red Ball"][:-1])
    assert node > 0 and trie.node_title[node] == -1  # an inner node, not a title by itself
    assert eos in trie.children(node).tolist() and len(trie.children(node)) == 2
    for t in catalog.titles:
        assert trie.lookup(ids[t]) == catalog.index(t)
        assert trie.lookup(ids[t][:-1]) == -1


def test_trie_from_sequences_and_errors():
    trie = ItemTrie([[5, 6, 0], [5, 0], [7, 0]], eos_token_id=0, prompt_suffix=None)
    check_structure(trie)
    assert trie.vocab_size == 8
    assert trie.children(0).tolist() == [5, 7]
    assert trie.lookup([5, 0]) == 1 and trie.lookup([5, 6, 0]) == 0 and trie.lookup([7, 0]) == 2
    assert trie.max_length == 3
    assert trie.title(1) == "1"  # no titles given: indices stand in
    with pytest.raises(ValueError, match="empty"):
        ItemTrie([], eos_token_id=0)
    with pytest.raises(ValueError, match="empty sequence"):
        ItemTrie([[1, 0], []], eos_token_id=0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ItemTrie([[1, 9]], eos_token_id=0, vocab_size=5)
    with pytest.raises(ValueError, match="non-negative"):
        ItemTrie([[1, -2]], eos_token_id=0)


def test_identical_token_sequences_are_merged_with_a_warning():
    with pytest.warns(UserWarning, match="exactly the same tokens as another title"):
        trie = ItemTrie([[3, 4, 0], [3, 0], [3, 4, 0]], eos_token_id=0, prompt_suffix=None)
    assert trie.collisions == {2: 0}
    assert trie.title_token_ids(2) == [3, 4, 0]
    assert trie.lookup([3, 4, 0]) == 0
    assert len(trie) == 2


def test_from_catalog_options():
    tok = get_tokenizer("bpe")
    catalog = ItemCatalog.from_titles(["Red Ball", "Blue Car"])
    trie = ItemTrie.from_catalog(catalog, tok, completion_template="{title}", prompt_suffix=None, add_eos=False)
    assert tok.decode(trie.title_token_ids(0)) == "Red Ball"
    with pytest.raises(ValueError, match="title"):
        ItemTrie.from_catalog(catalog, tok, completion_template="no placeholder")


# ===================================================================================================================
# ItemTrie: property tests over random catalogs, for the three tokenizer families
# ===================================================================================================================
_text = st.text(alphabet=TITLE_ALPHABET, min_size=1, max_size=20).filter(lambda s: s.strip())
_long_text = st.text(alphabet=TITLE_ALPHABET, min_size=60, max_size=160).filter(lambda s: s.strip())
_quoted = _text.map(lambda s: f'"{s}"')  # titles that are themselves quoted
_extension = st.text(alphabet=TITLE_ALPHABET, min_size=1, max_size=8)


@st.composite
def random_titles(draw) -> list[str]:
    """A list of titles with prefix titles, extensions (the original becomes a prefix), duplicates, quotes, unicode
    and long titles."""
    base = draw(st.lists(st.one_of(_text, _text, _quoted, _long_text), min_size=1, max_size=6))
    titles = list(base)
    for t in draw(st.lists(st.sampled_from(base), max_size=3)):
        cut = t[: draw(st.integers(1, len(t)))]
        if cut.strip():
            titles.append(cut)  # a prefix of another title
    for t in draw(st.lists(st.sampled_from(base), max_size=2)):
        titles.append(t + draw(_extension))  # another title is a prefix of this one
    titles += draw(st.lists(st.sampled_from(titles), max_size=3))  # duplicates: one title, several item ids
    return draw(st.permutations(titles))


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(titles=random_titles())
def test_trie_round_trips_random_catalogs(kind, titles):
    tok = get_tokenizer(kind)
    eos = tok.eos_token_id
    catalog = ItemCatalog.from_titles(titles)
    for t in set(titles):  # duplicates keep all their item ids, in order
        assert catalog.item_ids(t) == [k for k, u in enumerate(titles) if u == t]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # WordPiece normalises whitespace: some titles legitimately collide
        trie = ItemTrie.from_catalog(catalog, tok)
    check_structure(trie)
    expected = tokenize_completions([completion(t) for t in catalog.titles], tok, PROMPT_SUFFIX)
    for i, title in enumerate(catalog.titles):
        ids = trie.title_token_ids(i)
        assert ids == expected[i] + [eos]
        j = trie.lookup(ids)
        if i in trie.collisions:
            assert j == trie.collisions[i] and expected[j] == expected[i]
        else:
            assert j == i
        assert trie.lookup(ids[:-1]) == -1  # a title is only complete with its EOS
        if kind == "bpe":
            assert tok.decode(ids[:-1]) == completion(title)
    if kind in ("bpe", "unigram"):
        assert not trie.collisions  # lossless tokenizers never merge distinct titles
    assert len(trie) == len(catalog) - len(trie.collisions)
    assert trie.max_length == max(len(e) for e in expected) + 1


# ===================================================================================================================
# Boundary stability
# ===================================================================================================================
@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_default_prompt_suffix_is_stable(kind):
    tok = get_tokenizer(kind)
    trie = ItemTrie.from_catalog(ItemCatalog.from_titles(CATALOG_TITLES), tok)
    assert len(trie) == len(CATALOG_TITLES)


def test_unstable_boundary_raises():
    tok = get_tokenizer("bpe")
    # A prompt ending in a space: byte-level BPE pre-tokenizes ' "' as one piece, so the space merges with the
    # completion's opening quote and the ending's last token changes.
    suffix = "### Response: "
    alone = tok(suffix, add_special_tokens=False)["input_ids"]
    joined = tok(suffix + completion("Red Ball"), add_special_tokens=False)["input_ids"]
    assert joined[: len(alone)] != alone, "the chosen ending must really be unstable for this tokenizer"
    catalog = ItemCatalog.from_titles(["Red Ball", "Blue Car"])
    with pytest.raises(TrieBoundaryError, match="merge") as info:
        ItemTrie.from_catalog(catalog, tok, prompt_suffix=suffix)
    assert repr(suffix) in str(info.value)
    with pytest.raises(TrieBoundaryError):
        tokenize_completions([completion("Red Ball")], tok, suffix)
    assert isinstance(info.value, ValueError)


# ===================================================================================================================
# The real Toys catalog
# ===================================================================================================================
def test_real_toys_catalog_trie(toys_info_path, record_property):
    catalog = ItemCatalog.from_info_file(toys_info_path)
    tok = train_tokenizer(catalog.titles + [PROMPT_SUFFIX], kind="bpe", vocab_size=2000)
    start = time.perf_counter()
    trie = ItemTrie.from_catalog(catalog, tok)
    seconds = time.perf_counter() - start
    record_property("toys_trie_build_seconds", round(seconds, 3))  # informative only: no timing assertion
    print(f"Toys trie: {len(catalog):,} titles, {trie.num_nodes:,} nodes, {trie.nbytes() / 2**20:.1f} MiB, "
          f"built in {seconds:.2f} s")
    check_structure(trie)
    assert len(trie) == len(catalog) == 11_198
    assert not trie.collisions
    eos = tok.eos_token_id
    paths = [trie.title_token_ids(i) for i in range(len(catalog))]
    assert all(p[-1] == eos for p in paths)
    decoded = tok.batch_decode([p[:-1] for p in paths])
    assert [d for d, t in zip(decoded, catalog.titles) if d != completion(t)] == []
    # Every path leads back to its own title: all titles at once (one searchsorted per depth, as the logits
    # processor does it) and, for a sample, through `lookup`.
    width = max(len(p) for p in paths)
    tokens = np.full((len(paths), width), -1)
    for i, p in enumerate(paths):
        tokens[i, : len(p)] = p
    node = np.zeros(len(paths), dtype=np.int64)
    for d in range(width):
        active = tokens[:, d] >= 0
        keys = node[active] * trie.vocab_size + tokens[active, d]
        pos = np.searchsorted(trie.edge_keys, keys)
        assert np.all(trie.edge_keys[np.minimum(pos, len(trie.edge_keys) - 1)] == keys)
        node[active] = pos + 1
    np.testing.assert_array_equal(trie.node_title[node], np.arange(len(paths)))
    for i in range(0, len(paths), 11):
        assert trie.lookup(paths[i]) == i
