"""Helpers shared by the tests (importable as `rere_test_utils`; pytest fixtures live in conftest.py).

Everything here is offline and cheap: tokenizers are trained in milliseconds on a small catalog-like corpus and the
models are 2-layer, 32-wide random Qwen2s, built once per session.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trl_rere.testing import tiny_causal_lm, train_tokenizer


# The test models are tiny: intra-op threads only add overhead, and on a busy 2-core machine OpenMP barriers make a
# generate() call several times slower. One thread keeps the suite fast (and its timings stable).
torch.set_num_threads(1)

# -- shared data ----------------------------------------------------------------------------------------------------
# The data sets live next to the repository checkout, in <parent of the repo>/shared/data.
DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOYS_INFO = DATA_DIR / "amazon" / "info" / "Toys_and_Games_5_2016-10-2018-11.txt"
# Qwen2's real tokenizer, converted offline from the BPE ranks (shared/tokenizers/README.md)
QWEN2_TOKENIZER_DIR = DATA_DIR.parent / "tokenizers" / "qwen2"


# -- catalog-like text ----------------------------------------------------------------------------------------------
PROMPT_SUFFIX = "### Response:\n"

# Titles with the awkward cases a catalog has: prefix titles, quotes, apostrophes, unicode, tabs, digits, brackets.
CATALOG_TITLES = [
    "Red Ball",
    "Red Ball Pit",
    "Red Ball Pit Deluxe",
    "Blue Car",
    "Blue Car Garage",
    'Crayola "Washable" Markers, 12 ct',
    "LEGO Star Wars: X-Wing (75218)",
    "LEGO Friends 41123 Foal's Washing Station",
    "Hot Wheels 5-Pack",
    "Hot Wheels 20-Pack",
    "Café Über Puzzle – 1000 pièces",
    "日本 Kendama 🎯 Set",
    "Melissa & Doug's Wooden Train",
    "100% Cotton Doll Dress [Size M]",
    "Squishy Mesh Ball",
    "Rubik's Cube 3x3",
    "Nerf N-Strike Elite",
    "Play-Doh Modeling Compound 10-Pack",
    "UNO Card Game",
    "Monopoly Junior",
    "Barbie Dreamhouse",
    "Magna-Tiles 32 Piece Set",
    "Jenga Classic",
    "Connect 4",
    "Slinky",
    "Tab\tInside Title",
    "Funko POP! Marvel: Ant-Man",
    "Baby Einstein Take Along Tunes",
]

# Characters the property tests draw titles from. Every one of them appears in the tokenizer corpus, so the Unigram
# and WordPiece tokenizers (which map unseen characters to <unk>) never produce an unknown token on them.
TITLE_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " \"'&-:,.()[]!?/+#%"
    "éüÜßñ日本語🎯–™"
)

PROMPT_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request. \n\n"
    "### Instruction:\nGiven the toys and games the user has played, recommend the next one.\n \n"
    "### User Input: \nThe user has palyed the following toys and gamess before: {history}\n\n"
    + PROMPT_SUFFIX
)


def make_prompt(history: list[str]) -> str:
    """The authors' prompt for a user history (titles oldest first), ending in `PROMPT_SUFFIX`."""
    return PROMPT_TEMPLATE.format(history=",\t".join(f'"{t}"' for t in history))


TOKENIZER_CORPUS = (
    CATALOG_TITLES
    + [f'"{t}"\n' for t in CATALOG_TITLES]
    + [make_prompt(CATALOG_TITLES[:3]), make_prompt(CATALOG_TITLES[10:12]), PROMPT_SUFFIX]
    # each alphabet character both at the start of a word and inside one
    + [" ".join(TITLE_ALPHABET), "x" + "x".join(TITLE_ALPHABET.replace(" ", ""))]
)


# -- tokenizers and models ------------------------------------------------------------------------------------------
_TOKENIZERS: dict = {}
_MODELS: dict = {}


def get_tokenizer(kind: str):
    """The session's tokenizer of one family (`"bpe"`, `"unigram"`, `"wordpiece"`), trained once (vocab 512)."""
    if kind not in _TOKENIZERS:
        _TOKENIZERS[kind] = train_tokenizer(TOKENIZER_CORPUS, kind=kind, vocab_size=512)
    return _TOKENIZERS[kind]


def get_tiny_model(kind: str):
    """The session's tiny random Qwen2 (hidden 32, 2 layers, eval mode) for the tokenizer of `kind`."""
    if kind not in _MODELS:
        _MODELS[kind] = tiny_causal_lm(get_tokenizer(kind), seed=0)
    return _MODELS[kind]
