"""Tiny offline models for tests, smoke runs and benchmarks.

Nothing here touches the Hugging Face Hub: tokenizers are trained locally with the `tokenizers` library and
models are randomly initialised from a config. Three tokenizer families cover the boundary behaviours the title
trie has to cope with:

- `"bpe"`: byte-level BPE like GPT-2 / Qwen (ByteLevel pre-tokenizer and decoder, no normalizer). Any text,
  including newlines, tabs and emoji, round-trips exactly. The pad token defaults to the EOS token, as in Qwen.
- `"unigram"`: SentencePiece-style Unigram with a Metaspace pre-tokenizer (`prepend_scheme="first"`) like Llama.
  Every character of the training texts is in the vocabulary; other characters map to `<unk>`. Tabs and newlines
  are ordinary characters (Metaspace only rewrites spaces), so catalog text round-trips exactly.
- `"wordpiece"`: BERT-style WordPiece (BertPreTokenizer, WordPiece decoder), case kept. Whitespace is normalised
  and decoding puts spaces around punctuation, so text does not round-trip byte-for-byte; unknown words map to
  `[UNK]`.

All printable ASCII characters are always in the vocabulary. Training is deterministic: the same texts give the same
tokenizer in every process (see `_train_wordpiece_vocab` and `_canonical_unigram` for the trainer quirks this takes).
Training on a full catalog takes well under a second for BPE / WordPiece and a few seconds for Unigram.

Example:
```python
>>> from trl_rere.testing import tiny_causal_lm, train_tokenizer
>>> tokenizer = train_tokenizer(["Red Ball", "Blue Car"], kind="bpe")
>>> model = tiny_causal_lm(tokenizer)
```
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM


TOKENIZER_KINDS = ("bpe", "unigram", "wordpiece")
_MODEL_MAX_LENGTH = 1_000_000
_CONTINUATION_BASE = 0xF0000  # Unicode plane 15 (private use): stands for "##" continuation characters

# A small fixed corpus mixed into every training run so that all printable ASCII characters are in every vocabulary
# and common text is covered, even when the caller passes only a handful of titles.
_BASE_TEXT = (
    'Below is an instruction that describes a task. ### Response:\n"Red Ball"\n'
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG. 0123456789\t"
    + " ".join(chr(c) for c in range(33, 127))
)


def train_tokenizer(
    texts: Iterable[str],
    kind: str = "bpe",
    vocab_size: int = 512,
    eos_token: str = "<|endoftext|>",
    pad_token: str | None = None,
) -> PreTrainedTokenizerFast:
    """Trains a small tokenizer on `texts`, deterministically and offline.

    Args:
        texts: training texts (e.g. catalog titles and prompts).
        kind: `"bpe"`, `"unigram"` or `"wordpiece"` (see the module docstring).
        vocab_size: target vocabulary size, special tokens included; small corpora may give fewer tokens.
        eos_token: the end-of-sequence token.
        pad_token: the padding token; defaults to `eos_token` for `"bpe"` (like Qwen) and to a separate `"<pad>"`
            (`"[PAD]"` for WordPiece) otherwise.

    Returns:
        A `PreTrainedTokenizerFast` with `eos_token` and `pad_token` set, `padding_side="left"`, no BOS token and no
        post-processor (nothing is added around encoded text).
    """
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"kind must be one of {TOKENIZER_KINDS}, got {kind!r}")
    corpus = [_BASE_TEXT, *texts]
    unk_token = None

    if kind == "bpe":
        pad_token = pad_token or eos_token
        special = list(dict.fromkeys([eos_token, pad_token]))
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=1,
            special_tokens=special,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif kind == "unigram":
        unk_token = "<unk>"
        pad_token = pad_token or "<pad>"
        special = list(dict.fromkeys([eos_token, unk_token, pad_token]))
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
        tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
        # Unigram keeps every character seen in training ("required chars"), and the alphabet makes this explicit.
        alphabet = sorted({c for text in corpus for c in text} - {" "})
        trainer = trainers.UnigramTrainer(
            vocab_size=max(vocab_size, len(alphabet) + len(special) + 2),
            special_tokens=special,
            unk_token=unk_token,
            initial_alphabet=alphabet,
            max_piece_length=16,
            show_progress=False,
        )
    else:  # wordpiece
        unk_token = "[UNK]"
        pad_token = pad_token or "[PAD]"
        special = list(dict.fromkeys([eos_token, unk_token, pad_token]))
        tokenizer = Tokenizer(models.WordPiece(unk_token=unk_token, max_input_chars_per_word=100))
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
        )
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(prefix="##")
        vocab = _train_wordpiece_vocab(tokenizer, corpus, vocab_size, special)
        tokenizer.model = models.WordPiece(vocab, unk_token=unk_token, max_input_chars_per_word=100)
        tokenizer.add_special_tokens(special)
        trainer = None

    if trainer is not None:
        tokenizer.train_from_iterator(corpus, trainer=trainer)
    if kind == "unigram":
        tokenizer = _canonical_unigram(tokenizer, special)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=eos_token,
        pad_token=pad_token,
        unk_token=unk_token,
        padding_side="left",
        model_max_length=_MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )


def _train_wordpiece_vocab(tokenizer: Tokenizer, corpus: list[str], vocab_size: int, special: list[str]) -> dict:
    """Trains a WordPiece vocabulary deterministically.

    The stock `WordPieceTrainer` numbers its `##` continuation alphabet in hash order, so merges with tied counts
    (common in small corpora) come out differently from run to run. Instead, this runs the (deterministic) BPE
    trainer on the pre-tokenized words with every non-initial character mapped to a private-use code point, which is
    what WordPiece training is, and maps the pieces back (`##` for pieces that continue a word). Every character of
    the corpus is in the vocabulary both as a word start and as a `##` continuation.
    """
    words = [
        [w for w, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text))]
        for text in corpus
    ]
    chars = sorted({c for text in words for w in text for c in w})
    if chars and ord(chars[-1]) >= _CONTINUATION_BASE:
        raise ValueError("texts contain characters from Unicode plane 15-16 (private use), which are not supported")
    to_cont = {c: chr(_CONTINUATION_BASE + k) for k, c in enumerate(chars)}
    from_cont = {v: k for k, v in to_cont.items()}
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=special,
        initial_alphabet=chars + list(to_cont.values()),
        show_progress=False,
    )
    bpe.train_from_iterator(
        (" ".join(w[0] + "".join(to_cont[c] for c in w[1:]) for w in text) for text in words), trainer=trainer
    )
    pieces = set()
    for piece in bpe.get_vocab():
        if piece in special:
            continue
        if piece[0] in from_cont:
            pieces.add("##" + "".join(from_cont[c] for c in piece))
        else:
            pieces.add(piece[0] + "".join(from_cont[c] for c in piece[1:]))
    return {t: i for i, t in enumerate(special + sorted(pieces))}


def _canonical_unigram(tokenizer: Tokenizer, special: list[str]) -> Tokenizer:
    """Removes the run-to-run noise of the Unigram trainer so that training is reproducible.

    Scores carry float noise from hash-ordered sums (so near-equal pieces swap places), and characters that did not
    survive pruning are appended in hash order with scores `min_score - k * 1e-4`. Scores are rounded far below any
    real difference, that appended run is re-assigned in character order, and pieces are ordered by score, then
    text. Special tokens keep the first ids.
    """
    data = json.loads(tokenizer.to_str())
    model = data["model"]
    unk_piece = model["vocab"][model["unk_id"]][0]
    entries = [(p, score) for p, score in model["vocab"] if p not in special]
    # The appended characters sit on the grid min_score + k * 1e-4 (k = 0, 1, ...), sharing k = 0 with any trained
    # piece that has the minimum score; re-deal that group's scores to its characters in sorted order.
    low = min(score for _, score in entries)
    group, k = [], 0
    while True:
        step = [i for i, (p, score) in enumerate(entries) if len(p) == 1 and abs(score - low - k * 1e-4) < 1e-9]
        if not step:
            break
        group += step
        k += 1
    if len(group) > 1:
        chars = sorted(entries[i][0] for i in group)
        scores = sorted((entries[i][1] for i in group), reverse=True)
        for i, p, score in zip(sorted(group), chars, scores):
            entries[i] = (p, score)
    pieces = {p: round(score, 8) for p, score in entries}
    rest = sorted(pieces, key=lambda p: (-pieces[p], p))
    special_scores = {p: score for p, score in model["vocab"] if p in special}
    model["vocab"] = [[p, special_scores[p]] for p in special] + [[p, pieces[p]] for p in rest]
    model["unk_id"] = special.index(unk_piece)
    for added in data["added_tokens"]:
        added["id"] = special.index(added["content"])
    return Tokenizer.from_str(json.dumps(data))


def tiny_causal_lm(
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    seed: int = 0,
    vocab_size: int | None = None,
    **config_overrides,
) -> Qwen2ForCausalLM:
    """A randomly initialised, float32 `Qwen2ForCausalLM` sized for CPU tests.

    Args:
        tokenizer: supplies the EOS / pad / BOS ids and, by default, the vocabulary size.
        hidden_size: model width; the MLP is `2 * hidden_size` wide.
        num_layers: number of decoder layers.
        num_heads: attention heads (and key/value heads: no grouped-query attention).
        seed: seeds the initialisation; the global torch RNG state is left untouched.
        vocab_size: defaults to `len(tokenizer)`.
        **config_overrides: any other `Qwen2Config` field, e.g. `attn_implementation="sdpa"`.
    """
    config_kwargs = dict(
        vocab_size=vocab_size if vocab_size is not None else len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        use_sliding_window=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        attn_implementation="eager",
    )
    config_kwargs.update(config_overrides)
    config = Qwen2Config(**config_kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).to(torch.float32)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    model.eval()
    return model


def write_amazon_folder(
    path,
    category: str = "Toys_and_Games",
    splits: tuple[str, ...] = ("train", "valid", "test"),
    num_items: int = 32,
    users_per_split: int = 16,
    seed: int = 0,
):
    """Writes a tiny data folder in the D3/ReRe layout (`info/{category}_5_2016-10-2018-11.txt` and
    `{split}/{category}_5_2016-10-2018-11.csv`) from `trl_rere.data.synthetic_catalog_dataset`, for examples and tests
    of the file loaders without the real Amazon files. Returns the folder as a `pathlib.Path`.

    Example:
    ```python
    >>> from trl_rere.data import load_amazon
    >>> from trl_rere.testing import write_amazon_folder
    >>> data_dir = write_amazon_folder("tiny-data", splits=("train", "test"))
    >>> catalog, splits = load_amazon(data_dir, "Toys_and_Games", splits=("train", "test"))
    >>> len(catalog), len(splits["test"])
    (32, 16)
    ```
    """
    import csv
    from pathlib import Path

    from .data import synthetic_catalog_dataset

    root = Path(path)
    stem = f"{category}_5_2016-10-2018-11"
    catalog, dataset = synthetic_catalog_dataset(num_items=num_items, num_users=users_per_split * len(splits),
                                                 seed=seed)
    (root / "info").mkdir(parents=True, exist_ok=True)
    with open(root / "info" / f"{stem}.txt", "w", encoding="utf-8") as f:
        for title in catalog.titles:
            for item_id in catalog.item_ids(title):
                f.write(f"{title}\t{item_id}\n")
    columns = ["user_id", "history_item_id", "item_id", "history_item_title", "item_title"]
    for k, split in enumerate(splits):
        (root / split).mkdir(exist_ok=True)
        with open(root / split / f"{stem}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in dataset.select(range(k * users_per_split, (k + 1) * users_per_split)):
                # the list columns are Python list literals, as in the published files
                writer.writerow([row["user_id"], repr(row["history_item_ids"]), row["target_item_id"],
                                 repr(row["history_titles"]), row["target"]])
    return root


def write_minionerec_folder(
    path,
    category: str = "Industrial_and_Scientific",
    splits: tuple[str, ...] = ("valid", "test"),
    num_items: int = 32,
    users_per_split: int = 16,
    seed: int = 0,
):
    """Writes a tiny data folder in MiniOneRec's semantic-ID layout (`index/{category}.index.json`, the item texts
    `index/{category}.item.json` (title and description per item id), `info/{category}_5_2016-10-2018-11.txt` with
    `sid<TAB>title<TAB>item_id`, and `{split}/...csv` with the `history_item_sid` / `item_sid` columns) from
    `trl_rere.data.synthetic_sid_dataset`. Returns the folder.

    Example:
    ```python
    >>> from trl_rere import load_amazon
    >>> from trl_rere.testing import write_minionerec_folder
    >>> data_dir = write_minionerec_folder("tiny-sid-data")
    >>> catalog, splits = load_amazon(data_dir, "Industrial_and_Scientific", ("valid", "test"), item_format="sid")
    >>> len(catalog), splits["test"][0]["target"] in catalog
    (32, True)
    ```
    """
    import csv
    import json
    from pathlib import Path

    from .data import synthetic_sid_dataset
    from .sid_tokens import split_sid

    root = Path(path)
    stem = f"{category}_5_2016-10-2018-11"
    catalog, dataset = synthetic_sid_dataset(num_items=num_items, num_users=users_per_split * len(splits), seed=seed)
    title = {i: f"Item {i}" for i in catalog.item_id_to_title}
    for folder in ("index", "info", *splits):
        (root / folder).mkdir(parents=True, exist_ok=True)
    index = {str(i): split_sid(sid) for i, sid in sorted(catalog.item_id_to_title.items())}
    (root / "index" / f"{category}.index.json").write_text(json.dumps(index), encoding="utf-8")
    # the item texts the alignment tasks read; descriptions as the published file writes them, Python list literals
    texts = {str(i): {"title": title[i], "description": repr([f"Description of item {i}."])} for i in title}
    (root / "index" / f"{category}.item.json").write_text(json.dumps(texts), encoding="utf-8")
    with open(root / "info" / f"{stem}.txt", "w", encoding="utf-8") as f:
        for i, sid in sorted(catalog.item_id_to_title.items()):
            f.write(f"{sid}\t{title[i]}\t{i}\n")
    columns = ["user_id", "history_item_title", "item_title", "history_item_id", "item_id", "history_item_sid",
               "item_sid"]
    for k, split in enumerate(splits):
        with open(root / split / f"{stem}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in dataset.select(range(k * users_per_split, (k + 1) * users_per_split)):
                # the list columns are Python list literals, as in the published files
                ids = row["history_item_ids"]
                writer.writerow([row["user_id"], repr([title[i] for i in ids]), title[row["target_item_id"]],
                                 repr(ids), row["target_item_id"], repr(row["history_titles"]), row["target"]])
    return root


def tiny_recommender(
    titles=("Red Ball", "Blue Car", "Green Kite", "Pink Doll", "Red Car"), item_format: str = "title", seed: int = 0
):
    """`(catalog, tokenizer, model, trie)` for a handful of items: a BPE tokenizer trained on them, a random tiny
    Qwen2 and the catalog's trie, for examples and quick experiments with the decoding API.

    Example:
    ```python
    >>> from trl_rere.testing import tiny_recommender
    >>> catalog, tokenizer, model, trie = tiny_recommender()
    >>> len(catalog), len(trie), trie.eos_token_id == tokenizer.eos_token_id
    (5, 5, True)
    ```
    """
    from .catalog import ItemCatalog
    from .trie import ItemTrie

    catalog = ItemCatalog.from_titles(list(titles))
    tokenizer = train_tokenizer(list(catalog.titles))
    return catalog, tokenizer, tiny_causal_lm(tokenizer, seed=seed), ItemTrie.from_catalog(
        catalog, tokenizer, item_format=item_format
    )
