"""The offline tokenizers and tiny models that the other tests, the smoke example and the benchmarks build on."""

import json

import pytest
import torch

from trl_rere.testing import TOKENIZER_KINDS, tiny_causal_lm, train_tokenizer


TITLES = [
    'Crayola "Washable" Markers, 12 ct',
    "LEGO Star Wars: X-Wing (75218)",
    "Hot Wheels 5-Pack",
    "Café Über Puzzle – 1000 pièces",
    "日本 Kendama 🎯 Set",
    "Tab\tInside Title",
    "Melissa & Doug's Wooden Train",
    "100% Cotton Lab Coat [Size M]",
]
PROMPT_END = "### Response:\n"


@pytest.fixture(scope="module", params=TOKENIZER_KINDS)
def tokenizer(request):
    return train_tokenizer(TITLES + [PROMPT_END], kind=request.param)


def _squash(text):
    return "".join(text.split())


def test_special_tokens(tokenizer):
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.eos_token_id is not None and tokenizer.pad_token_id is not None
    assert tokenizer.padding_side == "left"
    assert tokenizer.model_max_length >= 100_000
    assert tokenizer.bos_token_id is None
    # The EOS token is atomic and nothing is added around encoded text.
    assert tokenizer.encode(tokenizer.eos_token) == [tokenizer.eos_token_id]
    assert tokenizer.encode("Hot Wheels", add_special_tokens=True) == tokenizer.encode(
        "Hot Wheels", add_special_tokens=False
    )


def test_pad_defaults():
    assert train_tokenizer(TITLES, kind="bpe").pad_token == "<|endoftext|>"
    for kind in ("unigram", "wordpiece"):
        tok = train_tokenizer(TITLES, kind=kind)
        assert tok.pad_token_id != tok.eos_token_id
        assert tok.unk_token is not None
    assert train_tokenizer(TITLES, kind="bpe", pad_token="<pad>").pad_token_id != 0


@pytest.mark.parametrize("title", TITLES)
def test_roundtrip(tokenizer, title):
    completion = f'"{title}"\n'
    ids = tokenizer.encode(completion, add_special_tokens=False)
    if tokenizer.unk_token_id is not None:
        assert tokenizer.unk_token_id not in ids  # every training character is in the vocabulary
    decoded = tokenizer.decode(ids)
    if tokenizer.backend_tokenizer.pre_tokenizer.__class__.__name__ == "ByteLevel":
        assert decoded == completion
    elif tokenizer.backend_tokenizer.model.__class__.__name__ == "Unigram":
        assert decoded == completion
    else:  # WordPiece normalises whitespace and spaces out punctuation
        assert _squash(decoded) == _squash(completion)


def test_unknown_characters_do_not_crash(tokenizer):
    text = "Zzyzx ☃ ß \x00 \u200b ∑ 🦄\n"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert all(0 <= i < len(tokenizer) for i in ids)
    tokenizer.decode(ids)
    if tokenizer.unk_token_id is None:  # byte-level BPE never needs an unknown token
        assert tokenizer.decode(ids) == text


def test_batch_padding_is_left(tokenizer):
    batch = tokenizer(["Hot Wheels 5-Pack", "LEGO"], padding=True, return_tensors="pt")
    assert batch["attention_mask"][1, 0] == 0
    assert batch["input_ids"][1, 0] == tokenizer.pad_token_id


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_training_is_deterministic(kind):
    a = train_tokenizer(TITLES, kind=kind).backend_tokenizer.to_str()
    b = train_tokenizer(list(TITLES), kind=kind).backend_tokenizer.to_str()
    assert json.loads(a)["model"] == json.loads(b)["model"]


def test_save_and_reload(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.encode(TITLES[1]) == tokenizer.encode(TITLES[1])
    assert (reloaded.eos_token_id, reloaded.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert reloaded.padding_side == "left"


def test_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        train_tokenizer(TITLES, kind="sentencepiece")


def test_tiny_causal_lm_forward_and_generate(tokenizer):
    model = tiny_causal_lm(tokenizer)
    assert model.dtype == torch.float32
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied

    batch = tokenizer(["Hot Wheels 5-Pack", "LEGO"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, labels=batch["input_ids"])
    assert out.logits.shape == (*batch["input_ids"].shape, len(tokenizer))
    assert torch.isfinite(out.loss)

    generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert generated.shape[0] == 2 and generated.shape[1] <= batch["input_ids"].shape[1] + 4
    beams = model.generate(**batch, max_new_tokens=4, num_beams=3, num_return_sequences=3, do_sample=False)
    assert beams.shape[0] == 6


def test_tiny_causal_lm_seeded_and_rng_neutral():
    tok = train_tokenizer(TITLES, kind="bpe")
    state = torch.random.get_rng_state()
    a, b, c = tiny_causal_lm(tok, seed=0), tiny_causal_lm(tok, seed=0), tiny_causal_lm(tok, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    pa, pb, pc = (m.model.embed_tokens.weight for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_tiny_causal_lm_overrides():
    tok = train_tokenizer(TITLES, kind="bpe")
    model = tiny_causal_lm(tok, hidden_size=16, num_layers=1, num_heads=4, vocab_size=len(tok) + 8,
                           attn_implementation="sdpa")
    assert model.config.num_hidden_layers == 1 and model.config.vocab_size == len(tok) + 8
    assert model.config._attn_implementation == "sdpa"
    batch = tok(["Hot Wheels", "LEGO Star Wars"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()
