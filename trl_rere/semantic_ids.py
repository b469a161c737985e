"""Items as semantic IDs (MiniOneRec's setting): the data loader, the code tokens and a synthetic SID catalog.

A semantic ID (SID) names an item by a few discrete codes, one per level of a residual quantiser over the item's text
embedding, written as tokens `<a_N>`, `<b_N>`, `<c_N>`, ... and concatenated without separators
(`"<a_236><b_231><c_226>"`). MiniOneRec (`github.com/AkaliKong/MiniOneRec`) adds every code to the tokenizer as one
new token, so that an item is as many tokens as it has levels and the trie branches once per level. Several items may
share a SID, as items may share a title; the catalog is then an `ItemCatalog` keyed by SID string, and everything
downstream (the trie, `constrained_beam_search`, `ReReTrainer`, `evaluate_ranking`, the rewards) treats the SID
string as the item's "title", written with the `"sid"` item format (`"{sid}\\n"` + EOS after `"### Response:\\n"`).

Typical use (a tiny folder in MiniOneRec's layout stands in for `../shared/data/minionerec`):
```python
>>> from trl_rere import ReReConfig, ReReTrainer, add_sid_tokens, load_amazon
>>> from trl_rere.testing import tiny_causal_lm, train_tokenizer, write_minionerec_folder
>>> data_dir = write_minionerec_folder("tiny-sid-data")
>>> catalog, splits = load_amazon(data_dir, "Industrial_and_Scientific", ("valid", "test"), item_format="sid")
>>> tokenizer = train_tokenizer(splits["valid"]["prompt"])
>>> codes = add_sid_tokens(tokenizer, catalog)  # one token per code; add them before building a model from scratch
>>> tiny_causal_lm(tokenizer).save_pretrained("tiny-sid-model")
>>> args = ReReConfig(output_dir="rere-sid", item_format="sid", num_generations=4, per_device_train_batch_size=8,
...                   max_steps=1, report_to=[], use_cpu=True)
>>> trainer = ReReTrainer(model="tiny-sid-model", args=args, train_dataset=splits["valid"],
...                       processing_class=tokenizer, catalog=catalog)
>>> trainer.trie.max_length  # three codes, the newline, EOS
5
```
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from datasets import Dataset, DatasetDict

from .catalog import ItemCatalog
from .data import (
    _FEATURES,
    DataError,
    _parse_int,
    find_category_files,
    check_synthetic_sizes,
    finish_split,
    parse_history,
    synthetic_users,
    read_csv_rows,
)
from .item_format import DEFAULT_PROMPT_SUFFIX, get_item_format


# MiniOneRec's RL prompt (`data.py`, `SidDataset`), used here for SFT, RL and evaluation alike: its SFT prepends an
# Alpaca preamble and its evaluation words the question differently, and one wording keeps the three consistent.
SID_PROMPT_TEMPLATE = (
    "### User Input: \n"
    "The user has interacted with items {history} in chronological order. "
    "Can you predict the next possible item that the user may expect?\n"
    "\n"
    "### Response:\n"
)
SID_HISTORY_SEPARATOR = ", "
SID_MAX_HISTORY = 10  # MiniOneRec's files keep at most the last 10 items

SID_REQUIRED_COLUMNS = ("user_id", "history_item_id", "item_id", "history_item_sid", "item_sid")

SID_DATA_HELP = (
    "The semantic-ID files are MiniOneRec's (github.com/AkaliKong/MiniOneRec, data/Amazon/): "
    "index/{Category}.index.json (item id -> its code tokens), info/{Category}_5_*.txt (sid<TAB>title<TAB>item_id) "
    "and train|valid|test/{Category}_5_*.csv (with history_item_sid and item_sid columns). Pass the folder that holds "
    "index/, info/ and the splits (or its parent, if the folder is called minionerec/)."
)

_CODE = re.compile(r"<[A-Za-z]+_[0-9]+>")
_SID = re.compile(r"(?:<[A-Za-z]+_[0-9]+>)+")


class SIDTokenError(ValueError):
    """A semantic-ID code that is not exactly one token of the tokenizer (e.g. the codes were never added)."""


# -- SID strings ------------------------------------------------------------------------------------------------------
def split_sid(sid: str) -> list[str]:
    """The code tokens of a SID string: `"<a_1><b_22><c_3>"` -> `["<a_1>", "<b_22>", "<c_3>"]`.

    Raises `ValueError` for anything that is not a non-empty concatenation of `<x_N>` codes (spaces, separators, a
    truncated code): such a string would tokenize into ordinary text pieces, not codes.
    """
    if not isinstance(sid, str):
        raise ValueError(f"a SID must be a string, got {type(sid).__name__} {sid!r}")
    if not _SID.fullmatch(sid):
        raise ValueError(f"malformed SID {sid[:80]!r}: expected a concatenation of <x_N> codes like '<a_1><b_2><c_3>'")
    return _CODE.findall(sid)


def _code_key(code: str) -> tuple[str, int]:
    level, _, number = code[1:-1].rpartition("_")
    return level, int(number)


def sid_codes(catalog_or_sids: ItemCatalog | Iterable[str]) -> list[str]:
    """Every distinct code token of the SIDs (a catalog's or a list's), by level then number (`<a_0>, <a_1>, ...`)."""
    sids = catalog_or_sids.titles if isinstance(catalog_or_sids, ItemCatalog) else catalog_or_sids
    if isinstance(sids, str):
        raise TypeError("pass a catalog or a list of SID strings, not a single string")
    codes: set[str] = set()
    for k, sid in enumerate(sids):
        try:
            codes.update(split_sid(sid))
        except ValueError as e:
            raise ValueError(f"item {k}: {e}") from None
    if not codes:
        raise ValueError("no SIDs given")
    return sorted(codes, key=_code_key)


# -- code tokens ------------------------------------------------------------------------------------------------------
def check_sid_tokens(
    tokenizer, catalog_or_sids: ItemCatalog | Iterable[str], prompt_suffix: str | None = DEFAULT_PROMPT_SUFFIX
) -> dict[str, int]:
    """Checks that every code of the SIDs is exactly one token where the model meets it; returns `{code: token id}`.

    For the trie to branch once per code and for the rewards to read items back, each code must be a token of the
    vocabulary, and each SID's completion, tokenized after the prompt ending as the trie tokenizes it
    (`prompt_suffix + sid + "\\n"`), must be the ending's tokens, then exactly those code tokens, then the newline's,
    and decode back to the same text. The codes are checked in context rather than alone because SentencePiece-style
    tokenizers put a word-start piece before a text's first token. Raises `SIDTokenError` naming the first code or SID
    that breaks this; `add_sid_tokens` fixes the usual cause (codes not in the vocabulary).

    Example:
    ```python
    >>> from trl_rere.semantic_ids import check_sid_tokens
    >>> from trl_rere.testing import train_tokenizer
    >>> check_sid_tokens(train_tokenizer(["### Response:\\n"]), ["<a_1><b_2><c_3>"])
    Traceback (most recent call last):
    ...
    trl_rere.semantic_ids.SIDTokenError: the SID code '<a_1>' is not a token of the tokenizer ...
    ```
    """
    sids = list(catalog_or_sids.titles if isinstance(catalog_or_sids, ItemCatalog) else catalog_or_sids)
    codes = sid_codes(sids)
    vocab = tokenizer.get_vocab()
    for code in codes:
        if code not in vocab:
            pieces = tokenizer.tokenize((prompt_suffix or "") + code)[len(tokenizer.tokenize(prompt_suffix or "")):]
            raise SIDTokenError(
                f"the SID code {code!r} is not a token of the tokenizer (it splits into {pieces}): add the catalog's "
                f"codes first, trl_rere.add_sid_tokens(tokenizer, catalog, model=model)"
            )
    ids = {code: vocab[code] for code in codes}
    fmt = get_item_format("sid", prompt_suffix=prompt_suffix)
    head = tokenizer(prompt_suffix, add_special_tokens=False)["input_ids"] if prompt_suffix else []
    texts = [fmt.render(sid) for sid in sids]
    encoded = tokenizer([(prompt_suffix or "") + t for t in texts], add_special_tokens=False)["input_ids"]
    tail = None  # the newline's tokens after a code, the same for every SID
    for sid, text, tokens in zip(sids, texts, encoded):
        codes_ids = [ids[c] for c in split_sid(sid)]
        rest = tokens[len(head) + len(codes_ids) :]
        tail = rest if tail is None else tail
        if tokens[: len(head)] != head or tokens[len(head) : len(head) + len(codes_ids)] != codes_ids or rest != tail:
            expected = head + codes_ids + tail
            raise SIDTokenError(
                f"the completion {text!r} after {prompt_suffix!r} tokenizes as "
                f"{tokenizer.convert_ids_to_tokens(tokens)}, not as the ending, one token per code and the newline "
                f"({tokenizer.convert_ids_to_tokens(expected)}): a code merges with the text around it"
            )
        decoded = tokenizer.decode(tokens[len(head) :], skip_special_tokens=True)
        if decoded != text:
            raise SIDTokenError(
                f"the completion {text!r} decodes back as {decoded!r} (a WordPiece-style decoder puts spaces between "
                f"tokens): the rewards, which read the decoded text, would not recognise the item"
            )
    return ids


def add_sid_tokens(
    tokenizer,
    catalog_or_sids: ItemCatalog | Iterable[str],
    model=None,
    prompt_suffix: str | None = DEFAULT_PROMPT_SUFFIX,
) -> list[str]:
    """Adds every code of the catalog's SIDs to `tokenizer` as one token each, resizes `model`, and checks the result.

    The codes are added as ordinary added tokens (`special_tokens=False`), not special ones: TRL decodes completions
    with `skip_special_tokens=True`, which would erase special tokens from the text the rewards read. Codes the
    tokenizer already has as single tokens are left alone, so calling this twice adds nothing the second time. With
    a `model`, its embeddings are resized to the new vocabulary when it outgrows them; they are never shrunk, since
    Qwen2 checkpoints carry spare rows beyond `len(tokenizer)` (151,936 for 151,646 tokens) that the new codes may
    fill as they are. New rows get transformers' default initialisation (near the mean embedding, so a pretrained
    model tells the codes apart only after SFT; build a from-scratch model after adding the codes instead). Returns
    the codes that were added, in id order, then runs `check_sid_tokens`, so that a tokenizer on which a code still is
    not one token fails here, not in training.

    Example:
    ```python
    >>> from trl_rere.semantic_ids import add_sid_tokens
    >>> from trl_rere.testing import tiny_causal_lm, train_tokenizer
    >>> tokenizer = train_tokenizer(["### Response:\\n"])
    >>> model = tiny_causal_lm(tokenizer)
    >>> add_sid_tokens(tokenizer, ["<a_1><b_2><c_3>", "<a_1><b_5><c_0>"], model=model)
    ['<a_1>', '<b_2>', '<b_5>', '<c_0>', '<c_3>']
    >>> model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    True
    ```
    """
    sids = list(catalog_or_sids.titles if isinstance(catalog_or_sids, ItemCatalog) else catalog_or_sids)
    vocab = tokenizer.get_vocab()
    missing = [c for c in sid_codes(sids) if c not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=False)
    if model is not None:
        rows = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > rows:
            model.resize_token_embeddings(len(tokenizer))
    check_sid_tokens(tokenizer, sids, prompt_suffix)
    return missing


# -- prompts ----------------------------------------------------------------------------------------------------------
def build_sid_prompt(
    history_sids: Sequence[str], max_history: int = SID_MAX_HISTORY, template: str = SID_PROMPT_TEMPLATE
) -> str:
    """MiniOneRec's prompt for one user: the last `max_history` history SIDs, oldest first, joined by `", "`.

    `template` holds `{history}` once and should end with the trie's prompt ending (`"### Response:\\n"`).

    Example:
    ```python
    >>> from trl_rere.semantic_ids import build_sid_prompt
    >>> build_sid_prompt(["<a_1><b_2><c_3>", "<a_4><b_5><c_6>"]).splitlines()[1][:70]
    'The user has interacted with items <a_1><b_2><c_3>, <a_4><b_5><c_6> in'
    ```
    """
    if isinstance(history_sids, str):
        raise TypeError("history_sids must be a sequence of SID strings, not a single string")
    if template.count("{history}") != 1:
        raise ValueError(f"the SID prompt template must contain '{{history}}' exactly once: {template[:80]!r}")
    history = list(history_sids)[-max_history:] if max_history > 0 else []
    # replace(), not format(): a template may contain other braces
    return template.replace("{history}", SID_HISTORY_SEPARATOR.join(history))


def _prompt_within(history: list[str], max_history: int, template: str, tokenizer, max_prompt_length) -> tuple:
    """(prompt, history kept): drops the oldest history items until the prompt fits `max_prompt_length` tokens."""
    history = history[-max_history:]
    while True:
        prompt = build_sid_prompt(history, max_history, template)
        if tokenizer is None or max_prompt_length is None:
            return prompt, history
        n = len(tokenizer(prompt)["input_ids"])  # with special tokens, as the trainer encodes prompts
        if n <= max_prompt_length:
            return prompt, history
        if len(history) == 1:
            raise ValueError(f"the prompt with one history item is {n} tokens, above max_prompt_length "
                             f"{max_prompt_length}")
        history = history[1:]


# -- files ------------------------------------------------------------------------------------------------------------
def read_sid_index(path: str | os.PathLike) -> dict[int, str]:
    """Reads MiniOneRec's `index/{Category}.index.json` (item id -> list of code tokens) as `{item id: SID string}`."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object mapping item ids to code lists, got {type(raw).__name__}")
    index: dict[int, str] = {}
    for key, codes in raw.items():
        try:
            item = int(key)
        except ValueError:
            raise DataError(f"{path}: key {key!r} is not an item id (an integer)") from None
        if not isinstance(codes, list) or not codes or not all(isinstance(c, str) for c in codes):
            raise DataError(f"{path}: item {item}: expected a non-empty list of code strings, got {codes!r}")
        sid = "".join(codes)
        try:
            if split_sid(sid) != codes:
                raise ValueError(f"the codes {codes} are not one <x_N> code each")
        except ValueError as e:
            raise DataError(f"{path}: item {item}: {e}") from None
        index[item] = sid
    if not index:
        raise DataError(f"{path}: the index is empty")
    return index


def read_sid_info(path: str | os.PathLike, index: dict[int, str] | None = None) -> tuple[ItemCatalog, dict[int, str]]:
    """Reads a MiniOneRec info file (`sid<TAB>title<TAB>item_id` per line) into (catalog keyed by SID, titles by id).

    The title is what lies between the first and the last tab (titles may contain tabs). With `index` (from
    `read_sid_index`), every item's SID must be the index's, and the two files must list the same items.
    """
    path = os.fspath(path)
    mapping: dict[str, list[int]] = {}
    titles: dict[int, str] = {}
    lines: dict[int, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            where = f"{path}:{lineno}"
            if len(fields) < 3:
                raise DataError(f"{where}: expected 'sid<TAB>title<TAB>item_id', found {len(fields)} field(s): "
                                f"{line[:80]!r}")
            sid, title, item_text = fields[0], "\t".join(fields[1:-1]), fields[-1]
            try:
                split_sid(sid)
                item = _parse_int(item_text, "item_id")
            except ValueError as e:
                raise DataError(f"{where}: {e}") from None
            if item in lines:
                raise DataError(f"{where}: item id {item} already defined on line {lines[item]}")
            if index is not None:
                if item not in index:
                    raise DataError(f"{where}: item id {item} (SID {sid}) is missing from the index")
                if index[item] != sid:
                    raise DataError(f"{where}: item id {item} has SID {sid} here but {index[item]} in the index")
            lines[item] = lineno
            titles[item] = title
            mapping.setdefault(sid, []).append(item)
    if not mapping:
        raise DataError(f"{path}: the info file is empty")
    if index is not None and len(index) != len(lines):
        extra = sorted(set(index) - set(lines))
        raise DataError(f"{path}: {len(extra)} item(s) of the index are not in the info file, e.g. item id {extra[0]}")
    return ItemCatalog(titles=list(mapping), title_to_item_ids=mapping, source=path), titles


def _parse_sid_row(row: dict, catalog: ItemCatalog, max_history: int, template: str, tokenizer,
                   max_prompt_length) -> dict:
    history_ids, history_sids, item_id = parse_history(row, SID_REQUIRED_COLUMNS, "history_item_sid")
    pairs = [(f"history item {k}", i, s) for k, (i, s) in enumerate(zip(history_ids, history_sids))]
    for what, item, sid in pairs + [("item_sid", item_id, row["item_sid"])]:
        try:
            split_sid(sid)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
        if sid not in catalog:
            raise ValueError(f"{what}: SID {sid} (item id {item}) is not in the index ({catalog.source})")
        try:
            expected = catalog.title_of(item)
        except KeyError:
            raise ValueError(f"{what}: item id {item} is not in the index ({catalog.source})") from None
        if sid != expected:
            raise ValueError(f"{what}: SID {sid} differs from the index's SID {expected} for item id {item}")
    prompt, kept = _prompt_within(history_sids, max_history, template, tokenizer, max_prompt_length)
    return {
        "prompt": prompt,
        "target": row["item_sid"],
        "target_item_id": item_id,
        "history_titles": kept,
        "history_item_ids": history_ids[len(history_ids) - len(kept):],
        "user_id": row["user_id"],
    }


def load_sid_split(
    csv_path: str | os.PathLike,
    catalog: ItemCatalog,
    split_name: str | None = None,
    max_history: int = SID_MAX_HISTORY,
    template: str = SID_PROMPT_TEMPLATE,
    tokenizer=None,
    max_prompt_length: int | None = None,
    on_error: str = "raise",
) -> Dataset:
    """Reads one MiniOneRec `train|valid|test/*.csv` file into a dataset of SID prompts.

    Columns as `trl_rere.data.load_amazon_split`'s: `prompt` (MiniOneRec's wording, `build_sid_prompt`), `target`
    (the next item's SID string), `target_item_id`, `history_titles` (the history items' SIDs, the last `max_history`,
    oldest first), `history_item_ids` and `user_id`. With a `tokenizer` and `max_prompt_length`, the oldest history
    items are dropped until a prompt fits. Every SID must be well-formed and agree with `catalog` (built from the
    index and info files) for its item id; a row that breaks this raises `DataError` naming the file, the 1-based data
    row and the CSV line (with `on_error="skip"`, such rows are dropped and one warning says how many).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not isinstance(max_history, int) or isinstance(max_history, bool) or max_history < 1:
        raise ValueError(f"max_history must be a positive integer, got {max_history!r}")
    if max_prompt_length is not None and tokenizer is None:
        raise ValueError("max_prompt_length needs the tokenizer that counts the prompt's tokens (tokenizer=...)")
    path = os.fspath(csv_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"interaction file not found: {path}. {SID_DATA_HELP}")
    label = f"{path} ({split_name})" if split_name else path
    skipped: list[tuple[int, int, str]] = []
    rows, data_row = read_csv_rows(
        path,
        label,
        SID_REQUIRED_COLUMNS,
        lambda row: _parse_sid_row(row, catalog, max_history, template, tokenizer, max_prompt_length),
        on_error,
        skipped,
    )
    records: dict[str, list] = {k: [] for k in _FEATURES}
    for _, _, parsed in rows:
        for k, v in parsed.items():
            records[k].append(v)
    return finish_split(records, label, skipped, data_row)


def sid_data_root(data_dir: str | os.PathLike, category: str) -> Path:
    """The folder holding `index/{category}.index.json`: `data_dir` itself or its `minionerec/` subfolder."""
    base = Path(data_dir)
    candidates = [base] + [base / sub for sub in ("minionerec", "MiniOneRec") if (base / sub).is_dir()]
    looked = [str(c / "index" / f"{category}.index.json") for c in candidates]
    for root, index in zip(candidates, looked):
        if os.path.isfile(index):
            return root
    raise FileNotFoundError(f"no semantic-ID index for category {category!r} under {base}; looked for: "
                            f"{', '.join(looked)}. {SID_DATA_HELP}")


def load_sid_amazon(
    data_dir: str | os.PathLike,
    category: str = "Industrial_and_Scientific",
    splits: Sequence[str] = ("train", "valid", "test"),
    **kwargs,
) -> tuple[ItemCatalog, DatasetDict]:
    """Loads a dataset in MiniOneRec's layout: `load_amazon(data_dir, category, splits, item_format="sid")`.

    Reads `index/{category}.index.json` and `info/{category}_5_*.txt` into a catalog keyed by SID string (cross-checked
    against each other), and each split's `{split}/{category}_5_*.csv` with `load_sid_split` (other keyword arguments:
    `max_history`, `template`, `tokenizer`, `max_prompt_length`, `on_error`). The category must match the file names
    exactly (the part before `_5_`). A missing file raises `FileNotFoundError` listing the paths it tried.

    Example:
    ```python
    >>> from trl_rere.semantic_ids import load_sid_amazon
    >>> from trl_rere.testing import write_minionerec_folder
    >>> catalog, splits = load_sid_amazon(write_minionerec_folder("tiny-sid-data"), splits=("test",), max_history=2)
    >>> row = splits["test"][0]  # SID strings: the target is a catalog key
    >>> row["target"] in catalog, len(row["history_titles"]) <= 2, row["prompt"].endswith("### Response:\\n")
    (True, True, True)
    ```
    """
    if isinstance(splits, str):
        splits = (splits,)
    if not isinstance(category, str) or not category.strip():
        raise ValueError(f"category must be a dataset name such as 'Industrial_and_Scientific', got {category!r}")
    root = sid_data_root(data_dir, category)
    files = find_category_files(root, category, splits)  # the same `{Category}_5_{dates}` naming as the title data
    index = read_sid_index(root / "index" / f"{category}.index.json")
    catalog, _ = read_sid_info(files["info"], index)
    return catalog, DatasetDict({s: load_sid_split(files[s], catalog, split_name=s, **kwargs) for s in splits})


def sid_prefix_pairs(
    dataset: Dataset, max_history: int = SID_MAX_HISTORY, template: str = SID_PROMPT_TEMPLATE
) -> Dataset:
    """Every (history prefix -> next item) pair of each row's sequence (its history, then its target), in order, each
    distinct (user, history, target) pair once.

    MiniOneRec's (and D3's) training split is built this way, by sliding over each user's sequence. Its valid and test
    files already hold several overlapping rows per user (one per event, each with the window before it), so the same
    pair arises from several rows; it is kept once, or a user's early events would weigh as much more as it has rows. Built from the
    valid split, every event used precedes the same user's test target, so nothing of the test split leaks in. Load
    the split with `max_history` at least the files' 10, so that the sequences are whole.

    Example:
    ```python
    >>> from trl_rere.semantic_ids import sid_prefix_pairs, synthetic_sid_dataset
    >>> _, users = synthetic_sid_dataset(num_items=16, num_users=2, history_len=(3, 3))
    >>> pairs = sid_prefix_pairs(users)  # each user's 3 history items + target: 3 pairs
    >>> len(pairs), [len(h) for h in pairs["history_titles"][:3]]
    (6, [1, 2, 3])
    ```
    """
    rows: dict[str, list] = {k: [] for k in _FEATURES}
    seen = set()
    for ex in dataset:
        sids = list(ex["history_titles"]) + [ex["target"]]
        ids = list(ex["history_item_ids"]) + [ex["target_item_id"]]
        for k in range(1, len(ids)):
            start = max(0, k - max_history)
            key = (ex["user_id"], tuple(ids[start:k + 1]))
            if key in seen:
                continue
            seen.add(key)
            rows["prompt"].append(build_sid_prompt(sids[start:k], max_history, template))
            rows["target"].append(sids[k])
            rows["target_item_id"].append(ids[k])
            rows["history_titles"].append(sids[start:k])
            rows["history_item_ids"].append(ids[start:k])
            rows["user_id"].append(ex["user_id"])
    return Dataset.from_dict(rows, features=_FEATURES)


# -- synthetic data ---------------------------------------------------------------------------------------------------
def synthetic_sid_dataset(
    num_items: int = 64,
    num_users: int = 256,
    history_len: tuple[int, int] = (2, 6),
    chain_length: int = 8,
    seed: int = 0,
    codebook_size: int = 32,
) -> tuple[ItemCatalog, Dataset]:
    """A tiny SID catalog and users with a learnable rule, the SID counterpart of `synthetic_catalog_dataset`.

    Items form series of about `chain_length`; item k of a series is always followed by item k+1 (cyclically) and a
    user's history is a run of one series, so the last history item decides the target. SIDs have three levels
    (`<a_N><b_N><c_N>`, codes below `codebook_size`); the items of one series share their first code, so the trie has
    shared prefixes as a quantiser's would. Columns as `load_sid_split`'s, prompts in MiniOneRec's wording.

    Example:
    ```python
    >>> from trl_rere.semantic_ids import synthetic_sid_dataset
    >>> catalog, users = synthetic_sid_dataset(num_items=16, num_users=4, chain_length=8)
    >>> len(catalog), len({sid[:sid.index("><")] for sid in catalog.titles})  # two series, one first code each
    (16, 2)
    ```
    """
    check_synthetic_sizes(num_items, num_users, history_len, chain_length)
    num_chains = max(1, num_items // chain_length)
    sizes = [num_items // num_chains + (c < num_items % num_chains) for c in range(num_chains)]
    if num_chains > codebook_size or max(sizes) > codebook_size:
        raise ValueError(f"codebook_size {codebook_size} is too small for {num_chains} series of up to {max(sizes)}")
    rng = random.Random(seed)
    first = rng.sample(range(codebook_size), num_chains)
    chains = []
    for c, size in enumerate(sizes):
        second = rng.sample(range(codebook_size), size)
        chains.append([f"<a_{first[c]}><b_{b}><c_{rng.randrange(codebook_size)}>" for b in second])
    sids = [s for chain in chains for s in chain]
    order = list(range(num_items))
    rng.shuffle(order)  # ids carry no hint of the series
    item_ids = dict(zip(sids, order))
    catalog = ItemCatalog.from_titles(sorted(sids, key=item_ids.get), sorted(order))
    hi = history_len[1]
    records = synthetic_users(chains, item_ids, num_users, history_len, rng,
                              lambda u, history: build_sid_prompt(history, max_history=hi))
    return catalog, Dataset.from_dict(records, features=_FEATURES)
