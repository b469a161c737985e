"""Trie-constrained beam search with tiny random models and the three tokenizer families."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from rere_test_utils import CATALOG_TITLES, PROMPT_SUFFIX, get_tokenizer, make_prompt
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessorList

from trl_rere.decoding import TrieScoreRecorder
from trl_rere.catalog import ItemCatalog
from trl_rere.decoding import (
    INVALID_SCORE,
    TrieLogitsProcessor,
    collect_beams,
    constrained_beam_search,
    generate_beams,
    left_pad,
    make_prefix_allowed_tokens_fn,
    tokenize_prompts,
)
from trl_rere.testing import tiny_causal_lm
from trl_rere.trie import ItemTrie


CATALOG = ItemCatalog.from_titles(CATALOG_TITLES)
# Histories of different lengths, so that batches are left-padded.
PROMPTS = [
    make_prompt(CATALOG_TITLES[:2]),
    make_prompt(CATALOG_TITLES[3:9]),
    make_prompt([CATALOG_TITLES[11]]),
]
BEAMS = 6

_TRIES: dict = {}


def trie_for(tokenizer, catalog: ItemCatalog = CATALOG) -> ItemTrie:
    key = (id(tokenizer), tuple(catalog.titles))
    if key not in _TRIES:
        _TRIES[key] = ItemTrie.from_catalog(catalog, tokenizer)
    return _TRIES[key]


def teacher_forced_score(model, prompt_ids: list[int], completion_ids: list[int]) -> float:
    """Sum over the completion of the full-vocabulary log-probability of each token, given everything before it."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    positions = torch.arange(len(prompt_ids) - 1, len(prompt_ids) + len(completion_ids) - 1)
    return logp[positions, torch.tensor(completion_ids)].sum().item()


def titles_and_scores(results):
    return [([b.title for b in r], [b.score for b in r]) for r in results]


def assert_same_beams(a, b, atol: float):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.titles == rb.titles
        assert [x.score for x in ra] == pytest.approx([x.score for x in rb], abs=atol)


def beam_search(model, input_ids, attention_mask, trie, eos, pad, num_beams=BEAMS, **kwargs):
    """Plain HF beam search over the whole trie (length_penalty 0), every step's processed scores kept."""
    return model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        num_beams=num_beams,
        num_return_sequences=num_beams,
        do_sample=False,
        length_penalty=0.0,
        early_stopping=False,
        max_new_tokens=trie.max_length,
        eos_token_id=eos,
        pad_token_id=pad,
        output_scores=True,
        return_dict_in_generate=True,
        **kwargs,
    )


def padded_prompts(tokenizer, trie, prompts=PROMPTS) -> tuple[torch.Tensor, torch.Tensor]:
    return left_pad(tokenize_prompts(tokenizer, prompts, trie), tokenizer.pad_token_id, "cpu")


@pytest.fixture(scope="module")
def beams(tokenizer_kind, tokenizer, tiny_model):
    """The reference run: the three prompts in one left-padded batch, vectorised processor."""
    return constrained_beam_search(tiny_model, tokenizer, PROMPTS, trie_for(tokenizer), num_beams=BEAMS)


# ===================================================================================================================
# End to end
# ===================================================================================================================
def test_beams_are_valid_distinct_sorted_and_scored(tokenizer, tiny_model, beams):
    trie = trie_for(tokenizer)
    prompt_ids = tokenize_prompts(tokenizer, PROMPTS, trie)
    assert len(beams) == len(PROMPTS)
    for p, result in enumerate(beams):
        assert result.complete and result.requested == BEAMS and len(result) == BEAMS
        titles = result.titles
        assert all(t in CATALOG for t in titles)
        assert len(set(titles)) == len(titles)
        scores = [b.score for b in result]
        assert scores == sorted(scores, reverse=True)
        assert all(INVALID_SCORE < s < 0 for s in scores)
        for rank, beam in enumerate(result):
            assert beam.rank == rank
            assert beam.title == CATALOG.titles[beam.title_index]
            assert beam.item_ids == CATALOG.item_ids(beam.title)
            assert beam.token_ids == trie.title_token_ids(beam.title_index)
            assert beam.token_ids[-1] == tokenizer.eos_token_id
            # The beam's tokens are how the tokenizer splits prompt + completion (what an SFT model was trained on).
            joined = tokenizer(PROMPTS[p] + f'"{beam.title}"\n', add_special_tokens=False)["input_ids"]
            assert joined == prompt_ids[p] + beam.token_ids[:-1]
            # The beam score is the plain sum of full-vocabulary token log-probs (length_penalty 0).
            assert beam.score == pytest.approx(teacher_forced_score(tiny_model, prompt_ids[p], beam.token_ids), abs=1e-3)


def test_processor_and_prefix_fn_give_the_same_beams(tokenizer, tiny_model, beams):
    # HF's own route to the same constraint: prefix_allowed_tokens_fn, scores from output_scores, no prompt prefill.
    trie = trie_for(tokenizer)
    input_ids, attention_mask = padded_prompts(tokenizer, trie)
    fn = make_prefix_allowed_tokens_fn(trie, input_ids.shape[1])
    out = beam_search(
        tiny_model, input_ids, attention_mask, trie, tokenizer.eos_token_id, tokenizer.pad_token_id,
        prefix_allowed_tokens_fn=fn,
    )
    slow = collect_beams(trie, out.sequences[:, input_ids.shape[1] :], out.sequences_scores, len(PROMPTS), BEAMS)
    assert_same_beams(beams, slow, atol=1e-4)


def test_left_padded_batch_matches_single_prompts(tokenizer, tiny_model, beams):
    trie = trie_for(tokenizer)
    lengths = [len(ids) for ids in tokenize_prompts(tokenizer, PROMPTS, trie)]
    assert len(set(lengths)) == len(lengths)  # the batch really is padded
    single = [constrained_beam_search(tiny_model, tokenizer, [p], trie, num_beams=BEAMS)[0] for p in PROMPTS]
    assert_same_beams(beams, single, atol=1e-4)
    # batch_size splits the prompts into several generate() calls with the same result
    chunked = constrained_beam_search(tiny_model, tokenizer, PROMPTS, trie, num_beams=BEAMS, batch_size=2)
    assert_same_beams(beams, chunked, atol=1e-4)


def test_prompts_encoded_once_give_the_same_beams(tokenizer, tiny_model, beams, monkeypatch):
    # generate_beams encodes each prompt once and repeats its KV cache for the beams; HF alone would encode it once per
    # beam. Both must give the same beams on a left-padded batch.
    import trl_rere.decoding.hf_generate as constrained

    trie = trie_for(tokenizer)
    ids = tokenize_prompts(tokenizer, PROMPTS, trie)
    width = max(len(i) for i in ids)
    input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(i)) + i for i in ids])
    attention_mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    cache = constrained._prefill_prompts(tiny_model, input_ids, attention_mask, BEAMS)
    assert cache is not None and cache.get_seq_length() == width - 1
    seen_rows = []
    # a hook, not a wrapped forward: generate() inspects forward's signature and would take another path
    hook = tiny_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen_rows.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        shared = constrained_beam_search(tiny_model, tokenizer, PROMPTS, trie, num_beams=BEAMS)
        # one pass over the prompts (all but the last token), then one token per beam per step
        assert seen_rows[0] == (len(PROMPTS), width - 1)
        assert all(shape == (len(PROMPTS) * BEAMS, 1) for shape in seen_rows[1:])
        monkeypatch.setattr(constrained, "_prefill_prompts", lambda *args: None)
        seen_rows.clear()
        plain = constrained_beam_search(tiny_model, tokenizer, PROMPTS, trie, num_beams=BEAMS)
        assert seen_rows[0] == (len(PROMPTS) * BEAMS, width)
    finally:
        hook.remove()
    assert_same_beams(shared, plain, atol=1e-4)
    assert_same_beams(beams, shared, atol=1e-4)


@pytest.mark.parametrize("shape", ["catalog", "wide_node", "fewer_titles"])
def test_recorded_scores_equal_hf_beam_scores(tokenizer, tiny_model, shape):
    # generate_beams sums the edge scores the processor recorded instead of asking HF for output_scores (a rows x
    # vocab copy per step); both must agree for every valid returned row, on the block and the flat gather paths.
    eos = tokenizer.eos_token_id
    ids = tokenize_prompts(tokenizer, PROMPTS, trie_for(tokenizer))
    if shape == "catalog":
        trie = trie_for(tokenizer)
    elif shape == "wide_node":  # one node with 60 children next to single-child paths: the flat path
        a, b, c = ids[0][-3:]
        seqs = [[a, t, eos] for t in range(10, 70)] + [[b, c, a, eos], [c, b, eos], [b, b, b, b, eos]]
        trie = ItemTrie(seqs, eos_token_id=eos, vocab_size=len(tokenizer), prompt_suffix=None)
    else:
        trie = trie_for(tokenizer, ItemCatalog.from_titles(["Red Ball", "Blue Car", "Red Ball Pit"]))
    input_ids, attention_mask = left_pad(ids, tokenizer.pad_token_id, "cpu")
    width = input_ids.shape[1]
    processor = TrieLogitsProcessor(trie, num_beams=8)
    recorder = TrieScoreRecorder(processor)
    out = beam_search(
        tiny_model, input_ids, attention_mask, trie, eos, tokenizer.pad_token_id, num_beams=8,
        logits_processor=LogitsProcessorList([processor, recorder]),
    )
    completions = out.sequences[:, width:]
    recorded = recorder.sequence_scores(completions, 8)
    hf = out.sequences_scores
    valid = hf > INVALID_SCORE
    assert valid.sum() >= (9 if shape == "fewer_titles" else len(PROMPTS) * 8)
    assert torch.allclose(recorded[valid], hf[valid], rtol=1e-6, atol=1e-5)
    for row, score in zip(completions.tolist(), recorded.tolist()):
        leaf = trie.walk(row[: row.index(eos) + 1]) if eos in row else -1
        assert (score > float("-inf")) == (leaf >= 0 and trie.node_title[leaf] >= 0)
    # generate_beams: the same scores, surplus rows (repeats of a better row) flagged, nothing rows x vocab kept
    completion_ids, scores = generate_beams(
        tiny_model, input_ids, attention_mask, trie, num_beams=8, pad_token_id=tokenizer.pad_token_id
    )
    assert torch.equal(completion_ids, completions)
    assert torch.allclose(scores[valid], hf[valid], rtol=1e-6, atol=1e-5)
    assert (scores > INVALID_SCORE).sum() == valid.sum()


def test_pad_token_equal_to_eos(tokenizer, tiny_model, beams):
    # Qwen pads with EOS. Our BPE tokenizer does so by default; for the others, drop the pad token, which makes
    # constrained_beam_search pad with EOS. Left padding is masked out, so the beams must not change.
    tok = copy.deepcopy(tokenizer)
    if tok.pad_token_id != tok.eos_token_id:
        tok.pad_token = None
        assert tok.pad_token_id is None
    results = constrained_beam_search(tiny_model, tok, PROMPTS, trie_for(tokenizer), num_beams=BEAMS)
    assert_same_beams(beams, results, atol=1e-4)


def test_train_mode_is_restored_and_decoding_is_deterministic(tokenizer_kind, tokenizer, beams):
    model = tiny_causal_lm(tokenizer, seed=0, attention_dropout=0.5)  # same weights as the shared model
    trie = trie_for(tokenizer)
    ids = tokenizer(PROMPTS[0], return_tensors="pt").input_ids
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)  # dropout is active
    in_train = constrained_beam_search(model, tokenizer, PROMPTS, trie, num_beams=BEAMS)
    assert model.training
    again = constrained_beam_search(model, tokenizer, PROMPTS, trie, num_beams=BEAMS)
    model.eval()
    in_eval = constrained_beam_search(model, tokenizer, PROMPTS, trie, num_beams=BEAMS)
    assert not model.training
    assert titles_and_scores(in_train) == titles_and_scores(again) == titles_and_scores(in_eval)
    assert_same_beams(in_eval, beams, atol=1e-5)


# ===================================================================================================================
# Edge cases
# ===================================================================================================================
@pytest.mark.parametrize("titles", [["Red Ball", "Red Ball Pit", "Blue Car"], ["Slinky"]])
def test_fewer_titles_than_beams(tokenizer, tiny_model, titles):
    catalog = ItemCatalog.from_titles(titles)
    trie = trie_for(tokenizer, catalog)
    results = constrained_beam_search(tiny_model, tokenizer, PROMPTS[:2], trie, num_beams=8)
    prompt_ids = tokenize_prompts(tokenizer, PROMPTS[:2], trie)
    for p, result in enumerate(results):
        assert not result.complete and result.requested == 8
        assert sorted(result.titles) == sorted(titles)  # every title found once, nothing invalid filled in
        scores = [b.score for b in result]
        assert scores == sorted(scores, reverse=True)
        for beam in result:
            assert beam.score == pytest.approx(teacher_forced_score(tiny_model, prompt_ids[p], beam.token_ids), abs=1e-3)


def test_fewer_titles_than_beams_raw_rows_are_flagged(tokenizer, tiny_model):
    # generate_beams returns num_beams rows per prompt; the surplus rows must be recognisable as invalid.
    titles = ["Red Ball", "Blue Car"]
    trie = trie_for(tokenizer, ItemCatalog.from_titles(titles))
    ids = tokenize_prompts(tokenizer, PROMPTS[:1], trie)
    input_ids = torch.tensor(ids)
    completion_ids, scores = generate_beams(tiny_model, input_ids, torch.ones_like(input_ids), trie, num_beams=4)
    assert completion_ids.shape[0] == scores.shape[0] == 4
    valid = [trie.lookup(row) >= 0 and s > INVALID_SCORE for row, s in zip(completion_ids.tolist(), scores.tolist())]
    assert 0 < sum(valid)
    groups = collect_beams(trie, completion_ids, scores, num_prompts=1, keep=4)
    assert sorted(groups[0].titles) == sorted(titles)


def test_num_return_sequences_below_num_beams(tokenizer, tiny_model, beams):
    trie = trie_for(tokenizer)
    top = constrained_beam_search(tiny_model, tokenizer, PROMPTS, trie, num_beams=BEAMS, num_return_sequences=3)
    for result, full in zip(top, beams):
        assert len(result) == 3 and result.complete and result.requested == 3
        assert result.titles == full.titles[:3]  # the same search, cut to the best 3
        assert [b.rank for b in result] == [0, 1, 2]
    with pytest.raises(ValueError, match="num_return_sequences"):
        constrained_beam_search(tiny_model, tokenizer, PROMPTS, trie, num_beams=2, num_return_sequences=3)


def test_prompt_must_end_with_the_trie_suffix(tokenizer, tiny_model):
    trie = trie_for(tokenizer)
    bad = PROMPTS[0][: -len(PROMPT_SUFFIX)] + "### Answer:\n"
    with pytest.raises(ValueError, match="prompt_suffix"):
        constrained_beam_search(tiny_model, tokenizer, [PROMPTS[1], bad], trie, num_beams=2)


def test_sentencepiece_style_prompt_ending_is_accepted():
    # Metaspace ("first") tokenizers prepend "▁" at the start of a text, so the ending tokenized alone differs from
    # the same ending inside the prompt; the completion's tokens are the same, and that is what the check compares.
    tok = get_tokenizer("unigram")
    alone = tok(PROMPT_SUFFIX, add_special_tokens=False)["input_ids"]
    in_prompt = tok(PROMPTS[0], add_special_tokens=False)["input_ids"]
    assert in_prompt[-len(alone) :] != alone
    assert tokenize_prompts(tok, PROMPTS, trie_for(tok)) == tok(PROMPTS, add_special_tokens=False)["input_ids"]


# ===================================================================================================================
# TrieLogitsProcessor and the prefix function, step by step without a model
# ===================================================================================================================
EOS = 0
VOCAB = 10
SEQS = [[5, 6, EOS], [5, 7, EOS], [5, EOS], [8, 9, EOS], [8, 9, 3, EOS], [8, EOS]]


def allowed(scores: torch.Tensor) -> list[list[int]]:
    return [torch.nonzero(torch.isfinite(row)).flatten().tolist() for row in scores]


def test_processor_masks_to_trie_children_and_follows_reordered_beams():
    trie = ItemTrie(SEQS, eos_token_id=EOS, vocab_size=VOCAB, prompt_suffix=None)
    proc = TrieLogitsProcessor(trie, num_beams=2)
    prompt = torch.tensor([[1, 2, 3], [1, 2, 3], [4, 4, 4], [4, 4, 4]])  # 2 prompts x 2 beams
    raw = torch.randn(4, VOCAB)
    out = proc(prompt, raw.clone())
    assert allowed(out) == [[5, 8]] * 4
    assert torch.equal(out[:, [5, 8]], raw[:, [5, 8]])  # allowed scores are untouched
    # Step 2: prompt 0 took 5 and 8, prompt 1 took 8 and 5.
    step2 = torch.cat([prompt, torch.tensor([[5], [8], [8], [5]])], dim=1)
    assert allowed(proc(step2, torch.randn(4, VOCAB))) == [[EOS, 6, 7], [EOS, 9], [EOS, 9], [EOS, 6, 7]]
    # Step 3: HF reordered the beams (rows swapped within each prompt); the processor must follow the prefixes,
    # not the row numbers.
    step3 = torch.cat([step2[[1, 0, 3, 2]], torch.tensor([[9], [6], [7], [9]])], dim=1)
    raw = torch.randn(4, VOCAB)
    out = proc(step3, raw.clone())
    assert allowed(out) == [[EOS, 3], [EOS], [EOS], [EOS, 3]]
    finite = torch.isfinite(out)
    assert torch.equal(out[finite], raw[finite])
    # Step 4: two beams of one prompt may share a prefix.
    step4 = torch.cat([step3[[0, 0, 2, 3]], torch.tensor([[3], [EOS], [EOS], [3]])], dim=1)
    assert allowed(proc(step4, torch.randn(4, VOCAB))) == [[EOS], [EOS], [EOS], [EOS]]


def test_processor_rows_off_the_trie_may_only_end():
    trie = ItemTrie(SEQS, eos_token_id=EOS, vocab_size=VOCAB, prompt_suffix=None)
    proc = TrieLogitsProcessor(trie, num_beams=1)
    prompt = torch.tensor([[1, 2], [1, 2]])
    proc(prompt, torch.randn(2, VOCAB))
    step2 = torch.cat([prompt, torch.tensor([[9], [5]])], dim=1)  # row 0 leaves the trie
    raw = torch.randn(2, VOCAB)
    out = proc(step2, raw.clone())
    assert allowed(out) == [[EOS], [EOS, 6, 7]]
    assert out[0, EOS] == raw[0, EOS]


def test_prefix_fn_matches_the_processor():
    trie = ItemTrie(SEQS, eos_token_id=EOS, vocab_size=VOCAB, prompt_suffix=None)
    fn = make_prefix_allowed_tokens_fn(trie, prompt_length=2)
    assert sorted(fn(0, torch.tensor([1, 2]))) == [5, 8]
    assert sorted(fn(0, torch.tensor([1, 2, 5]))) == [EOS, 6, 7]
    assert fn(0, torch.tensor([1, 2, 5, 6])) == [EOS]
    assert fn(0, torch.tensor([1, 2, 9])) == [EOS]  # off the trie: HF rejects an empty list, so only EOS


def test_beam_search_steps_equal_hf_prefix_fn_steps(tokenizer_kind, tokenizer, tiny_model):
    # In beam search the processor returns one reused tensor, resetting only the entries it wrote the step before.
    # HF keeps a copy of every step's processed scores (output_scores): each must equal what HF's own
    # prefix_allowed_tokens_fn constraint gives at that step, the -inf pattern included, and so must the beams.
    trie = trie_for(tokenizer)
    input_ids, attention_mask = padded_prompts(tokenizer, trie, PROMPTS[:2])
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    ours = beam_search(
        tiny_model, input_ids, attention_mask, trie, eos, pad,
        logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie, num_beams=BEAMS)]),
    )
    fn = make_prefix_allowed_tokens_fn(trie, input_ids.shape[1])
    hf = beam_search(tiny_model, input_ids, attention_mask, trie, eos, pad, prefix_allowed_tokens_fn=fn)
    assert torch.equal(ours.sequences, hf.sequences)
    assert torch.equal(ours.sequences_scores, hf.sequences_scores)
    assert len(ours.scores) == len(hf.scores) > 2
    assert all(torch.equal(a, b) for a, b in zip(ours.scores, hf.scores))


def test_sampling_keeps_every_steps_scores(tokenizer, tiny_model):
    # HF sampling stores the processed scores without copying them (output_scores): with num_beams=1 the processor
    # masks each step's own input, so every stored step still allows exactly its rows' trie children.
    trie = trie_for(tokenizer)
    input_ids, attention_mask = padded_prompts(tokenizer, trie, PROMPTS[:2])
    eos = tokenizer.eos_token_id
    torch.manual_seed(0)
    out = tiny_model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        do_sample=True,
        top_k=None,  # no warper after the processor: HF stores the processor's own output
        num_return_sequences=4,
        max_new_tokens=trie.max_length,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie, num_beams=1)]),
        output_scores=True,
        return_dict_in_generate=True,
    )
    generated = out.sequences[:, input_ids.shape[1] :].tolist()
    assert len(out.scores) > 2
    for step, scores in enumerate(out.scores):
        for row, ids in enumerate(generated):
            prefix = ids[:step]
            node = trie.walk(prefix) if eos not in prefix else -1
            expect = sorted(trie.children(node).tolist()) if node >= 0 else []
            assert allowed(scores[row : row + 1]) == [expect or [eos]], (step, row)


def test_score_recorder_must_follow_its_processor(tokenizer, tiny_model):
    trie = trie_for(tokenizer)
    input_ids, attention_mask = padded_prompts(tokenizer, trie, PROMPTS[:1])
    processor = TrieLogitsProcessor(trie, num_beams=2)
    with pytest.raises(RuntimeError, match="right after that processor"):
        beam_search(
            tiny_model, input_ids, attention_mask, trie, tokenizer.eos_token_id, tokenizer.pad_token_id, num_beams=2,
            logits_processor=LogitsProcessorList([TrieScoreRecorder(processor), processor]),
        )
    recorder = TrieScoreRecorder(TrieLogitsProcessor(trie, num_beams=2))  # its processor never runs
    with pytest.raises(RuntimeError, match="right after that processor"):
        recorder(input_ids, torch.zeros(2, len(tokenizer)))


def test_processor_flat_path_for_one_wide_node():
    # One row on a node with 28 children and three on single-child nodes: the processor lists the allowed pairs
    # flat instead of padding every row to 28 (same result).
    seqs = [[1, t, EOS] for t in range(10, 38)] + [[2, 3, EOS], [4, 5, EOS], [6, 7, EOS]]
    trie = ItemTrie(seqs, eos_token_id=EOS, vocab_size=40, prompt_suffix=None)
    proc = TrieLogitsProcessor(trie, num_beams=4)
    prompt = torch.tensor([[1, 1]] * 4)
    proc(prompt, torch.randn(4, 40))
    step2 = torch.cat([prompt, torch.tensor([[1], [2], [9], [6]])], dim=1)  # row 2 leaves the trie
    raw = torch.randn(4, 40)
    out = proc(step2, raw.clone())
    assert allowed(out) == [list(range(10, 38)), [3], [EOS], [7]]
    finite = torch.isfinite(out)
    assert torch.equal(out[finite], raw[finite])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_processor_matches_a_reference_walk(data):
    """Random tries, beams that branch, reorder, share prefixes and fall off the trie: at every step each row allows
    exactly its node's children (EOS alone once off the trie or past the end), with the scores untouched, whether the
    processor masks its input in place (one row per prompt) or reuses its output tensor (beam search). A recorder
    after it keeps exactly the allowed scores of the live rows, keyed by (prompt, child node)."""
    vocab = 40
    seqs = data.draw(st.lists(st.lists(st.integers(1, vocab - 1), min_size=1, max_size=5), min_size=1, max_size=10))
    if data.draw(st.booleans()):  # a wide node next to narrow ones
        seqs += [[1, t] for t in range(10, 38)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate sequences are merged
        trie = ItemTrie([s + [EOS] for s in seqs], eos_token_id=EOS, vocab_size=vocab, prompt_suffix=None)
    num_prompts, beams = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    rows = num_prompts * beams
    reuse = beams > 1
    proc = TrieLogitsProcessor(trie, num_beams=beams)
    recorder = TrieScoreRecorder(proc)
    prompt = torch.arange(rows * 2).view(rows, 2) % vocab
    gen: list[list[int]] = [[] for _ in range(rows)]
    generator = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    for step in range(data.draw(st.integers(1, 6))):
        input_ids = torch.cat([prompt, torch.tensor(gen, dtype=torch.long).view(rows, step)], dim=1)
        # a model scores identical inputs identically: rows of one prompt with the same prefix get the same scores
        by_prefix: dict = {}
        for r in range(rows):
            by_prefix.setdefault((r // beams, tuple(gen[r])), torch.randn(vocab, generator=generator))
        raw = torch.stack([by_prefix[(r // beams, tuple(gen[r]))] for r in range(rows)])
        given_scores = raw.clone()
        out = recorder(input_ids, proc(input_ids, given_scores))
        if step == 0 or not reuse:
            assert out is given_scores  # masked in place
        else:
            assert torch.equal(given_scores, raw)  # the reused output is written, the input left alone
        for r in range(rows):
            node = trie.walk(gen[r])
            expect = sorted(trie.children(node).tolist()) if node >= 0 else []
            expect = expect or [EOS]
            assert allowed(out[r : r + 1]) == [expect]
            assert torch.equal(out[r, expect], raw[r, expect])
        recorded = dict(zip(recorder._edge_keys[-1].tolist(), recorder._edge_scores[-1].tolist()))
        recorded.pop(-1, None)  # rows off the trie keep EOS, which is no edge
        expected = {}
        for r in range(rows):
            node = trie.walk(gen[r])
            first = int(trie.first_child[node]) if node >= 0 else 0
            for child in range(first, first + (int(trie.num_children[node]) if node >= 0 else 0)):
                expected[(r // beams) * trie.num_nodes + child] = raw[r, trie.node_token[child]].item()
        assert recorded == expected
        new = []
        for r in range(rows):  # each new row continues some row of the same prompt
            parent = gen[(r // beams) * beams + data.draw(st.integers(0, beams - 1))]
            node = trie.walk(parent)
            kids = trie.children(node).tolist() if node >= 0 else []
            if kids and data.draw(st.integers(0, 4)) > 0:
                token = data.draw(st.sampled_from(kids))
            else:
                token = data.draw(st.integers(0, vocab - 1))
            new.append(parent + [token])
        gen = new
