"""Semantic IDs from item text: embed each item's text, quantise the embeddings residually, write MiniOneRec's layout.

The pipeline (`build_semantic_ids` for arrays, `make_sid_dataset` for folders):

  text       each item's title, plus description, brand and categories when a metadata file gives them
             (`embedding_texts`)
  embedding  `embed_texts`: a sentence-transformers model by name (`Qwen/Qwen3-Embedding-0.6B` by default; the
             package is optional), `"tfidf"` (scikit-learn TF-IDF + truncated SVD, offline) or a `.npy` array
  codes      `quantize`: residual k-means (`"rqkmeans"`, scikit-learn), balanced residual k-means
             (`"rqkmeans-balanced"`, `k-means-constrained`, as MiniOneRec's `rq/`) or an RQ-VAE in torch whose
             codebooks start from residual k-means (`"rqvae"`); `levels` codes per item, each below `codebook_size`
  distinct   `resolve_collisions`: items that share all their codes are moved, all but one, to the nearest free code
             of the last level under the same prefix (nearest to the item's last residual), or, if that prefix is full,
             to the nearest free code one level up, and so on; `SIDStats` reports the collision rate before this and
             the codebook usage per level
  layout     `write_sid_layout`: `index/{category}.index.json`, `index/{category}.item.json`, `info/` with the `sid`
             column and the split CSVs with `history_item_sid` / `item_sid`, read by `load_amazon(...,
             item_format="sid")` unchanged

Re-assignment at the last level (rather than an extra level, TIGER's choice) keeps every SID the same length, so the
trie, the prompts and the code vocabulary do not change with the catalog, and a moved item still shares its first
`levels - 1` codes with the items it collided with: it stays in their part of the trie, as MiniOneRec's Sinkhorn step
aims at.

Example:
```python
>>> import numpy as np
>>> from trl_rere.data.build_sids import build_semantic_ids
>>> emb = np.random.default_rng(0).normal(size=(40, 8)).astype("float32")
>>> sids, stats = build_semantic_ids(emb, levels=2, codebook_size=8, seed=0)
>>> len(set(sids)) == 40, sids[0].startswith("<a_")
(True, True)
>>> stats.num_items, len(stats.usage_per_level)
(40, 2)
```
"""

from __future__ import annotations

import ast
import csv
import json
import logging
import math
import os
import string
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..catalog import ItemCatalog
from .errors import DataError
from .readers import find_category_files, items_by_id

logger = logging.getLogger(__name__)

METHODS = ("rqkmeans", "rqkmeans-balanced", "rqvae")
DEFAULT_ENCODER = "Qwen/Qwen3-Embedding-0.6B"
TEXT_FIELDS = ("title", "description", "brand", "categories")
LEVEL_NAMES = string.ascii_lowercase  # MiniOneRec's <a_N>, <b_N>, <c_N>, ...
SPLITS = ("train", "valid", "test")


@dataclass
class SIDStats:
    """What the quantiser did: collisions before resolution and how much of each codebook the SIDs use."""

    num_items: int = field(metadata={"help": "Items quantised."})
    levels: int = field(metadata={"help": "Codes per SID."})
    codebook_size: int | list[int] = field(metadata={"help": "Codes per level (one number, or one per level)."})
    colliding_items: int = field(metadata={"help": "Items whose raw SID another item had too, all but one per shared "
                                                   "SID (num_items - distinct raw SIDs): the items that were moved."})
    collision_rate: float = field(metadata={"help": "colliding_items / num_items, before resolution."})
    max_items_per_sid: int = field(metadata={"help": "The most items that shared one raw SID."})
    moved_above_last_level: int = field(metadata={"help": "Moved items whose prefix was full, so a code above the "
                                                          "last level changed too."})
    usage_per_level: list[float] = field(metadata={"help": "Distinct codes used / the level's codes, per level, after "
                                                           "resolution."})
    prefix_usage: list[int] = field(metadata={"help": "Distinct prefixes of length 1..levels after resolution "
                                                      "(the last is num_items: every SID distinct)."})

    def to_text(self) -> str:
        usage = ", ".join(f"{LEVEL_NAMES[k]} {u:.1%}" for k, u in enumerate(self.usage_per_level))
        return (f"{self.num_items} items, {self.levels} levels x {self.codebook_size} codes; collisions before "
                f"resolution: {self.colliding_items} items ({self.collision_rate:.1%}, at most "
                f"{self.max_items_per_sid} per SID), {self.moved_above_last_level} moved above the last level; "
                f"codebook usage per level: {usage}; distinct prefixes per length: {self.prefix_usage}")


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"this step needs {package}: pip install {package} (or pip install 'trl-rere[sids]')") from None


# -- item texts -------------------------------------------------------------------------------------------------------
def _text_of(record: dict, fields=TEXT_FIELDS) -> str:
    parts = []
    for name in fields:
        value = record.get(name)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = " ".join(str(v) for v in value)
        value = str(value).strip()
        if value and value not in ("[]", "nan", "None"):
            parts.append(value)
    return ". ".join(parts)


def read_item_metadata(path: str | os.PathLike) -> dict[int, dict]:
    """Reads item metadata as `{item id: {field: value}}` from MiniOneRec's `index/{category}.item.json` shape (a JSON
    object keyed by item id) or a JSON-lines file with an `item_id` field per line. Raises `DataError` naming the file
    (and line) for anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"item metadata file not found: {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    raw = None
    if not path.endswith(".jsonl"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":  # "Extra data": a first complete object, then more: JSON lines
                raise DataError(f"{path}: not valid JSON ({e}); expected {{item id: {{title, description, ...}}}} "
                                f"or JSON lines with an item_id field") from None
    if raw is None:
        records: dict[int, dict] = {}
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e})") from None
            if not isinstance(rec, dict) or "item_id" not in rec:
                raise DataError(f"{path}:{lineno}: expected a JSON object with an 'item_id' field")
            try:
                item = int(rec["item_id"])
            except (TypeError, ValueError):
                raise DataError(f"{path}:{lineno}: item_id {rec['item_id']!r} is not an integer") from None
            if item in records:
                raise DataError(f"{path}:{lineno}: item_id {item} appears twice")
            records[item] = rec
        if not records:
            raise DataError(f"{path}: no item records")
        return records
    records = items_by_id(raw, path, "their text fields")
    for item, rec in records.items():
        if not isinstance(rec, dict):
            raise DataError(f"{path}: item {item}: expected an object of text fields, got {type(rec).__name__}")
    return records


def embedding_texts(
    data_dir: str | os.PathLike, category: str, metadata: str | os.PathLike | None = None
) -> tuple[list[int], list[str], dict[int, dict]]:
    """(item ids in info-file order, their texts, their metadata records) for a title layout (D3/ReRe's
    `info/{category}_5_*.txt`). The text is the title, or, with `metadata`, the record's title, description, brand and
    categories joined (the info file's title where the record has none). Metadata for items the catalog lacks is
    ignored with a warning; catalog items without metadata keep their title."""
    info = find_category_files(data_dir, category, splits=())["info"]
    catalog = ItemCatalog.from_info_file(info)
    ids = [i for t in catalog.titles for i in catalog.item_ids(t)]
    ids.sort()
    records = {i: {"title": catalog.item_id_to_title[i]} for i in ids}
    if metadata is not None:
        meta = read_item_metadata(metadata)
        extra = sorted(set(meta) - set(records))
        if extra:
            logger.warning("%s: %d item id(s) are not in %s and are ignored, e.g. %d", metadata, len(extra), info,
                           extra[0])
        missing = [i for i in ids if i not in meta]
        if missing:
            logger.warning("%s: %d item(s) of %s have no metadata and keep only their title, e.g. item id %d",
                           metadata, len(missing), info, missing[0])
        for i in ids:
            if i in meta:
                rec = {k: v for k, v in meta[i].items() if k != "item_id"}
                rec["title"] = rec.get("title") or records[i]["title"]
                records[i] = rec
    return ids, [_text_of(records[i]) for i in ids], records


# -- embeddings -------------------------------------------------------------------------------------------------------
def embed_texts(texts: list[str], encoder: str = DEFAULT_ENCODER, dim: int = 256, seed: int = 0,
                batch_size: int = 64) -> np.ndarray:
    """Item embeddings, one float32 row per text.

    `encoder` is `"tfidf"` (TF-IDF over word uni- and bigrams, truncated SVD to `dim` components, rows L2-normalised;
    offline), a path to a `.npy` array of shape (len(texts), d) (loaded with `allow_pickle=False`), or a
    sentence-transformers model name or folder (normalised embeddings; needs `pip install sentence-transformers`).

    Example:
    ```python
    >>> from trl_rere.data.build_sids import embed_texts
    >>> embed_texts(["red ball", "blue car", "red car", "blue ball"], "tfidf", dim=2).shape
    (4, 2)
    ```
    """
    if not texts:
        raise ValueError("no item texts to embed")
    if encoder == "tfidf":
        _require("sklearn", "scikit-learn")
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize

        tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1, max_features=200_000)
        x = tfidf.fit_transform(texts)
        n_comp = min(dim, x.shape[1] - 1, len(texts) - 1)
        if n_comp < 1:
            raise ValueError(f"the texts have too few distinct words ({x.shape[1]}) for a TF-IDF embedding")
        x = TruncatedSVD(n_components=n_comp, random_state=seed, n_iter=7).fit_transform(x)
        return normalize(x).astype(np.float32)
    if encoder.endswith(".npy"):
        if not os.path.isfile(encoder):
            raise FileNotFoundError(f"embedding file not found: {encoder}")
        try:
            x = np.load(encoder, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{encoder}: not a plain numeric .npy array ({e})") from None
        if x.ndim != 2 or x.shape[0] != len(texts):
            raise ValueError(f"{encoder}: expected an array of shape ({len(texts)}, d), one row per item in item-id "
                             f"order, got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise ValueError(f"{encoder}: the embeddings must be finite numbers (dtype {x.dtype})")
        return x.astype(np.float32)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError(f"encoder {encoder!r} is a sentence-transformers model, which needs `pip install "
                          f"sentence-transformers` (or pip install 'trl-rere[sids]'; or use --encoder tfidf, or a .npy "
                          f"array)") from None
    model = SentenceTransformer(encoder, device="cpu" if not _cuda() else None)
    x = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=True,
                     convert_to_numpy=True)
    return np.asarray(x, dtype=np.float32)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# -- quantisers -------------------------------------------------------------------------------------------------------
@dataclass
class ResidualCodes:
    """Codes (n, levels) of the vectors `x` (n, d) under residual codebooks `centroids[level]` (k_level, d)."""

    x: np.ndarray
    codes: np.ndarray
    centroids: list[np.ndarray]

    def residual(self, i: int, level: int, codes=None) -> np.ndarray:
        codes = self.codes[i] if codes is None else codes
        r = self.x[i].astype(np.float64).copy()
        for lv in range(level):
            r -= self.centroids[lv][codes[lv]]
        return r


def _kmeans(x: np.ndarray, k: int, seed: int, balanced: bool) -> tuple[np.ndarray, np.ndarray]:
    if balanced:
        KMeansConstrained = _require("k_means_constrained", "k-means-constrained").KMeansConstrained

        n = len(x)
        # balanced as MiniOneRec's constrained RQ-KMeans: every cluster holds about n / k items
        km = KMeansConstrained(n_clusters=k, size_min=max(1, n // k), size_max=math.ceil(n / k), random_state=seed,
                               n_init=1, max_iter=100)
        labels = km.fit_predict(x.astype(np.float64))
        return km.cluster_centers_.astype(np.float64), labels.astype(np.int64)
    KMeans = _require("sklearn.cluster", "scikit-learn").KMeans
    km = KMeans(n_clusters=k, random_state=seed, n_init=1, max_iter=100)
    labels = km.fit_predict(x.astype(np.float64))
    return km.cluster_centers_.astype(np.float64), labels.astype(np.int64)


def level_sizes(codebook_size: int | list[int] | tuple[int, ...], levels: int) -> list[int]:
    """Codes per level: `codebook_size` for every level, or one number per level (e.g. a coarse first level)."""
    sizes = [codebook_size] * levels if isinstance(codebook_size, int) else list(codebook_size)
    if len(sizes) != levels or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 2 for k in sizes):
        raise ValueError(f"codebook_size must be an integer >= 2 or {levels} of them (one per level), got "
                         f"{codebook_size!r}")
    return sizes


def residual_kmeans(x: np.ndarray, levels: int, codebook_size: int | list[int], seed: int = 0,
                    balanced: bool = False) -> ResidualCodes:
    """Residual k-means: level 1 clusters the vectors, each next level clusters what the previous levels left over.

    With fewer distinct vectors than `codebook_size`, a level clusters them into as many codes as there are vectors
    and fills its codebook with copies of those centroids, so that every level still offers `codebook_size` codes."""
    from tqdm.auto import tqdm

    r = x.astype(np.float64).copy()
    codes, cents = np.zeros((len(x), levels), dtype=np.int64), []
    sizes = level_sizes(codebook_size, levels)
    for level in tqdm(range(levels), desc="residual k-means" + (" (balanced)" if balanced else ""), leave=False):
        size = sizes[level]
        k = min(size, len(np.unique(r.round(12), axis=0)))
        c, labels = _kmeans(r, k, seed + level, balanced)
        if k < size:  # repeated centroids: codes that collision resolution can still hand out
            c = np.concatenate([c, c[np.arange(size - k) % k]])
        codes[:, level], r = labels, r - c[labels]
        cents.append(c)
    return ResidualCodes(x.astype(np.float64), codes, cents)


def rqvae(x: np.ndarray, levels: int, codebook_size: int, seed: int = 0, latent_dim: int = 64, hidden: int = 256,
          epochs: int = 200, lr: float = 1e-3, batch_size: int = 1024, beta: float = 0.25) -> ResidualCodes:
    """An RQ-VAE (TIGER's quantiser): an MLP encoder, `levels` residual codebooks over its latent space initialised by
    residual k-means on the initial latents, an MLP decoder; trained on reconstruction + commitment loss with
    straight-through gradients. Returns the codes with the trained latents and codebooks (for collision resolution)."""
    import torch
    from torch import nn
    from tqdm.auto import trange

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    d = x.shape[1]
    enc = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim))
    dec = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, d))
    xt = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        init = residual_kmeans(enc(xt).numpy(), levels, codebook_size, seed)
    books = nn.ParameterList([nn.Parameter(torch.as_tensor(c, dtype=torch.float32)) for c in init.centroids])
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), *books.parameters()], lr=lr)

    def quantise(z):
        r, q, codes, commit = z, torch.zeros_like(z), [], 0.0
        for book in books:
            idx = torch.cdist(r, book).argmin(dim=1)
            e = book[idx]
            commit = commit + ((r.detach() - e) ** 2).mean() + beta * ((r - e.detach()) ** 2).mean()
            q, r, codes = q + e, r - e.detach(), codes + [idx]
        return q, torch.stack(codes, 1), commit

    for _ in trange(epochs, desc="RQ-VAE", leave=False):
        for batch in torch.randperm(len(xt), generator=gen).split(batch_size):
            z = enc(xt[batch])
            q, _, commit = quantise(z)
            recon = dec(z + (q - z).detach())
            loss = ((recon - xt[batch]) ** 2).mean() + commit
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        z = enc(xt)
        _, codes, _ = quantise(z)
    return ResidualCodes(z.double().numpy(), codes.numpy().astype(np.int64),
                         [b.detach().double().numpy() for b in books])


def quantize(x: np.ndarray, method: str = "rqkmeans", levels: int = 3, codebook_size: int = 256, seed: int = 0,
             **kwargs) -> ResidualCodes:
    """Raw codes of every row of `x` with `method` ("rqkmeans", "rqkmeans-balanced" or "rqvae"); not yet distinct."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "rqvae":
        return rqvae(x, levels, codebook_size, seed, **kwargs)
    return residual_kmeans(x, levels, codebook_size, seed, balanced=method == "rqkmeans-balanced")


# -- distinct SIDs ----------------------------------------------------------------------------------------------------
def resolve_collisions(rc: ResidualCodes) -> tuple[np.ndarray, int, int, int]:
    """Makes every row of `rc.codes` distinct; returns (codes, items moved, largest group, moved above the last
    level).

    In each group of items with the same codes, the item nearest to the group's reconstruction keeps them; each other
    item (nearest first) takes the nearest free code of the last level, by the distance of its last-level residual to
    that level's codebook. When all codes under its prefix are taken, the nearest code one level up whose subtree has
    room is taken instead, and the levels below are chosen nearest-free again."""
    codes = rc.codes.copy()
    n, levels = codes.shape
    sizes = [len(c) for c in rc.centroids]
    capacity = [math.prod(sizes[lv:]) for lv in range(levels + 1)]  # SIDs under a prefix of length lv
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, row in enumerate(map(tuple, codes)):
        groups[row].append(i)
    used: set[tuple] = set(groups)
    under = Counter(key[:lv] for key in used for lv in range(levels))
    colliding = n - len(groups)
    largest = max(len(g) for g in groups.values())

    def last_dist(i):
        return float(np.sum((rc.residual(i, levels - 1) - rc.centroids[-1][codes[i, -1]]) ** 2))

    movers = []
    for key in sorted(k for k, g in groups.items() if len(g) > 1):
        ordered = sorted(groups[key], key=lambda i: (last_dist(i), i))
        movers += ordered[1:]

    def place(i, prefix: tuple, r: np.ndarray):
        level = len(prefix)
        order = np.argsort(np.sum((r[None, :] - rc.centroids[level]) ** 2, axis=1), kind="stable")
        for k in order:
            key = prefix + (int(k),)
            if level == levels - 1:
                if key not in used:
                    return key
            elif under[key] < capacity[level + 1]:
                found = place(i, key, r - rc.centroids[level][k])
                if found:
                    return found
        return None

    above = 0
    for i in movers:
        for depth in range(levels - 1, -1, -1):
            prefix = tuple(int(c) for c in codes[i, :depth])
            if under[prefix] >= capacity[depth]:
                continue
            key = place(i, prefix, rc.residual(i, depth))
            if key is not None:
                break
        else:  # unreachable when the item count is within the capacity, checked by build_semantic_ids
            raise RuntimeError("no free SID left")
        above += depth < levels - 1
        used.add(key)
        for lv in range(levels):
            under[key[:lv]] += 1
        codes[i] = key
    return codes, colliding, largest, above


def sid_strings(codes: np.ndarray) -> list[str]:
    """MiniOneRec's SID strings: one `<x_N>` token per level, `x` = a, b, c, ..."""
    return ["".join(f"<{LEVEL_NAMES[lv]}_{c}>" for lv, c in enumerate(row)) for row in codes.tolist()]


def build_semantic_ids(embeddings: np.ndarray, method: str = "rqkmeans", levels: int = 3, codebook_size: int = 256,
                       seed: int = 0, **kwargs) -> tuple[list[str], SIDStats]:
    """One distinct SID per row of `embeddings` (n, d), and the `SIDStats` of the quantisation.

    Deterministic for a seed. Raises `ValueError` when the catalog has more items than `codebook_size ** levels`
    SIDs, or for a bad `method`, `levels` or `codebook_size`."""
    x = np.asarray(embeddings)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"embeddings must be a non-empty 2-D array (items x dimensions), got shape {x.shape}")
    if not (isinstance(levels, int) and 1 <= levels <= len(LEVEL_NAMES)):
        raise ValueError(f"levels must be an integer from 1 to {len(LEVEL_NAMES)}, got {levels!r}")
    sizes = level_sizes(codebook_size, levels)
    if len(x) > math.prod(sizes):
        raise ValueError(f"{len(x)} items do not fit in {levels} levels x {codebook_size} codes "
                         f"({math.prod(sizes)} SIDs): raise --codebook_size or --levels")
    rc = quantize(x, method, levels, codebook_size, seed, **kwargs)
    codes, colliding, largest, above = resolve_collisions(rc)
    stats = SIDStats(
        num_items=len(x), levels=levels, codebook_size=codebook_size if isinstance(codebook_size, int) else sizes, colliding_items=colliding,
        collision_rate=colliding / len(x), max_items_per_sid=largest, moved_above_last_level=above,
        usage_per_level=[len(np.unique(codes[:, lv])) / sizes[lv] for lv in range(levels)],
        prefix_usage=[len({tuple(r[: lv + 1]) for r in codes.tolist()}) for lv in range(levels)],
    )
    return sid_strings(codes), stats


# -- MiniOneRec's layout ----------------------------------------------------------------------------------------------
def _list_cell(value: str, where: str) -> list:
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise DataError(f"{where}: {value[:80]!r} is not a list literal") from None
    if not isinstance(parsed, list):
        raise DataError(f"{where}: expected a list literal, got {value[:80]!r}")
    return parsed


def write_sid_layout(data_dir: str | os.PathLike, category: str, out: str | os.PathLike, item_ids: list[int],
                     sids: list[str], records: dict[int, dict]) -> dict[str, Path]:
    """Writes MiniOneRec's layout under `out` from a title layout under `data_dir` and one SID per item id.

    `index/{category}.index.json` (item id -> code tokens), `index/{category}.item.json` (item id -> text fields),
    `info/{stem}.txt` (`sid<TAB>title<TAB>item_id`) and each split of the title layout as `{split}/{stem}.csv` with
    its columns plus `history_item_sid` (a list literal) and `item_sid`. Returns the written paths by kind."""
    from ..sid_tokens import split_sid

    if len(item_ids) != len(sids) or len(set(sids)) != len(sids):
        raise ValueError("write_sid_layout needs one distinct SID per item id")
    splits = tuple(s for s in SPLITS if any(Path(data_dir).glob(f"**/{s}/{category}_5_*.csv")))
    files = find_category_files(data_dir, category, splits=splits)
    stem = files["info"].stem
    sid_of = dict(zip(item_ids, sids))
    out = Path(out)
    for sub in ("index", "info", *splits):
        (out / sub).mkdir(parents=True, exist_ok=True)
    written = {"index": out / "index" / f"{category}.index.json", "item": out / "index" / f"{category}.item.json",
               "info": out / "info" / f"{stem}.txt"}
    with open(written["index"], "w", encoding="utf-8") as f:
        json.dump({str(i): split_sid(sid_of[i]) for i in item_ids}, f)
    with open(written["item"], "w", encoding="utf-8") as f:
        json.dump({str(i): {k: v for k, v in records[i].items()} for i in item_ids}, f, ensure_ascii=False, indent=1)
    with open(written["info"], "w", encoding="utf-8") as f:
        for i in item_ids:
            title = " ".join(str(records[i]["title"]).split())  # one line, no tabs: the info file's fields
            f.write(f"{sid_of[i]}\t{title}\t{i}\n")
    for split in splits:
        src, dst = files[split], out / split / f"{stem}.csv"
        with open(src, encoding="utf-8", newline="") as fin, open(dst, "w", encoding="utf-8", newline="") as fout:
            reader = csv.DictReader(fin)
            for col in ("history_item_id", "item_id"):
                if col not in (reader.fieldnames or []):
                    raise DataError(f"{src}: no {col!r} column (found {reader.fieldnames})")
            columns = [c for c in reader.fieldnames if c not in ("history_item_sid", "item_sid")]
            writer = csv.DictWriter(fout, columns + ["history_item_sid", "item_sid"])
            writer.writeheader()
            for lineno, row in enumerate(reader, start=2):
                where = f"{src}:{lineno}"
                history = _list_cell(row["history_item_id"], f"{where} history_item_id")
                try:
                    row["history_item_sid"] = repr([sid_of[int(i)] for i in history])
                    row["item_sid"] = sid_of[int(row["item_id"])]
                except (KeyError, ValueError) as e:
                    raise DataError(f"{where}: item id {e} is not in the catalog {files['info']}") from None
                writer.writerow({k: row[k] for k in columns + ["history_item_sid", "item_sid"]})
        written[split] = dst
    return written


def make_sid_dataset(data_dir: str | os.PathLike, category: str, out: str | os.PathLike, method: str = "rqkmeans",
                     encoder: str = DEFAULT_ENCODER, levels: int = 3, codebook_size: int = 256, seed: int = 0,
                     metadata: str | os.PathLike | None = None, dim: int = 256) -> SIDStats:
    """Title layout -> MiniOneRec's SID layout: `embedding_texts`, `embed_texts`, `build_semantic_ids`,
    `write_sid_layout`. Returns the `SIDStats`.

    Example:
    ```python
    >>> from trl_rere import load_amazon
    >>> from trl_rere.data.build_sids import make_sid_dataset
    >>> from trl_rere.testing import write_amazon_folder
    >>> src = write_amazon_folder("tiny-data", splits=("valid", "test"))
    >>> stats = make_sid_dataset(src, "Toys_and_Games", "tiny-sids", encoder="tfidf", levels=2, codebook_size=8)
    >>> catalog, splits = load_amazon("tiny-sids", "Toys_and_Games", ("valid", "test"), item_format="sid")
    >>> len(catalog) == stats.num_items == 32
    True
    ```
    """
    ids, texts, records = embedding_texts(data_dir, category, metadata)
    emb = embed_texts(texts, encoder, dim=dim, seed=seed)
    sids, stats = build_semantic_ids(emb, method, levels, codebook_size, seed)
    write_sid_layout(data_dir, category, out, ids, sids, records)
    return stats


__all__ = [
    "DEFAULT_ENCODER",
    "METHODS",
    "ResidualCodes",
    "SIDStats",
    "build_semantic_ids",
    "embed_texts",
    "make_sid_dataset",
    "quantize",
    "read_item_metadata",
    "embedding_texts",
    "residual_kmeans",
    "resolve_collisions",
    "rqvae",
    "sid_strings",
    "write_sid_layout",
]
