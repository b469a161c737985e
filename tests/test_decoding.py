"""The decoding layer's seams: the backend contract, the one beam-search core that training and evaluation share,
and prompts tokenized and the model switched to eval mode once per evaluation."""

import pytest
import torch

import trl_rere.decoding as decoding
from trl_rere import ReReConfig, ReReTrainer
from trl_rere.data import synthetic_catalog_dataset
from trl_rere.decoding import (
    Completions,
    DecodingBackend,
    DecodingOptions,
    HFGenerate,
    beam_search,
    constrained_beam_search,
    draw_groups,
    eval_mode,
    tokenize_prompts,
)
from trl_rere.evaluation import evaluate_ranking
from trl_rere.testing import tiny_causal_lm, tiny_recommender, train_tokenizer
from trl_rere.trie import ItemTrie


PROMPTS = ['"Red Ball"\n### Response:\n', '"Blue Car" "Green Kite"\n### Response:\n']


@pytest.fixture(scope="module")
def recommender():
    return tiny_recommender()


class CountingBackend:
    """HFGenerate, recording what each call received."""

    def __init__(self):
        self.inner = HFGenerate()
        self.calls = []

    def beam_search(self, model, prompt_ids, trie, num_beams, options):
        self.calls.append(("beam_search", [list(p) for p in prompt_ids], num_beams, options, model.training))
        return self.inner.beam_search(model, prompt_ids, trie, num_beams, options)

    def sample(self, model, prompt_ids, trie, num_samples, options):
        self.calls.append(("sample", [list(p) for p in prompt_ids], num_samples, options, model.training))
        return self.inner.sample(model, prompt_ids, trie, num_samples, options)


def test_the_reference_backend_meets_the_contract(recommender):
    _, tokenizer, model, trie = recommender
    assert isinstance(HFGenerate(), DecodingBackend) and isinstance(CountingBackend(), DecodingBackend)
    prompt_ids = tokenize_prompts(tokenizer, PROMPTS, trie)
    with eval_mode(model):
        out = HFGenerate().beam_search(model, prompt_ids, trie, 4, DecodingOptions())
    assert isinstance(out, Completions) and out.num_prompts == 2 and out.rows_per_prompt == 4
    for p in range(2):  # best first, each item once
        scores = out.scores[p * 4 : (p + 1) * 4]
        assert bool((scores[:-1] >= scores[1:]).all())
        rows = [decoding.cut_after_eos(r, trie.eos_token_id) for r in out.completion_ids[p * 4 : (p + 1) * 4].tolist()]
        items = [trie.lookup(r) for r in rows]
        assert all(i >= 0 for i in items) and len(set(items)) == 4
    with pytest.raises(ValueError, match="one score per row"):
        Completions(out.completion_ids, out.scores[:-1], 4)


def test_training_and_evaluation_share_one_core(recommender):
    _, tokenizer, model, trie = recommender
    prompt_ids = tokenize_prompts(tokenizer, PROMPTS, trie)
    backend = CountingBackend()
    options = DecodingOptions(pad_token_id=tokenizer.pad_token_id)
    groups = draw_groups(model, prompt_ids, trie, options, group_size=3, backend=backend)
    with eval_mode(model):
        ranked = beam_search(model, prompt_ids, trie, num_beams=3, options=options, backend=backend)
    texts = constrained_beam_search(model, tokenizer, PROMPTS, trie, num_beams=3)
    # the backend got the tokenized prompts unchanged, in eval mode, with the options whole
    assert [c[1] for c in backend.calls] == [prompt_ids, prompt_ids]
    assert all(c[3] is options and c[4] is False for c in backend.calls)
    for group, beams, text in zip(groups, ranked, texts):
        assert [(m.title, m.score) for m in group] == [(b.title, b.score) for b in beams] == [
            (b.title, b.score) for b in text
        ]


def test_draw_groups_hands_the_sampling_options_on(recommender):
    catalog, tokenizer, model, trie = recommender
    prompt_ids = tokenize_prompts(tokenizer, PROMPTS[:1], trie)
    backend = CountingBackend()
    options = DecodingOptions("dynamic", dynamic_sampling_factor=1.5, temperature=0.7)
    torch.manual_seed(0)
    (group,) = draw_groups(model, prompt_ids, trie, options, group_size=4, targets=[0], backend=backend)
    assert [(c[0], c[2]) for c in backend.calls] == [("sample", 6)]  # ceil(1.5 * 4) samples
    assert [m.rank for m in group] == [0, 1, 2, 3] and all(m.title in catalog for m in group)


def test_options_come_from_the_config_by_name(tmp_path):
    args = ReReConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, num_generations=4, beam_width=8,
                      sampling_strategy="beam", shared_prompt_cache=True, top_k=5)
    options = DecodingOptions.from_args(args, pad_token_id=3)
    assert (options.beam_width, options.shared_prompt_cache, options.top_k, options.pad_token_id) == (8, True, 5, 3)
    assert options.num_beams(group_size=args.num_generations) == 8
    with pytest.raises(ValueError, match="sampling_strategy"):
        DecodingOptions("greedy")


def test_evaluation_tokenizes_once_and_switches_mode_once(monkeypatch):
    catalog, dataset = synthetic_catalog_dataset(num_items=16, num_users=6)
    tokenizer = train_tokenizer(list(catalog.titles) + list(dataset["prompt"]))
    model, trie = tiny_causal_lm(tokenizer), ItemTrie.from_catalog(catalog, tokenizer)
    tokenized, switches = [], []
    real_tokenize = decoding.tokenize_prompts
    monkeypatch.setattr(decoding, "tokenize_prompts", lambda tok, p, *a, **k: tokenized.append(len(p))
                        or real_tokenize(tok, p, *a, **k))
    real_train = model.train
    monkeypatch.setattr(model, "train", lambda mode=True: switches.append(mode) or real_train(mode))
    model.train()
    switches.clear()
    backend = CountingBackend()
    evaluate_ranking(model, tokenizer, dataset, trie, num_beams=4, ks=(1, 4), batch_size=2, show_progress=False,
                     backend=backend)
    assert tokenized == [6]  # one checked pass over all prompts, not one per batch of 2
    assert switches == [False, True]  # into eval mode once, back to training once
    assert [len(c[1]) for c in backend.calls] == [2, 2, 2] and not any(c[4] for c in backend.calls)


def test_the_trainer_draws_through_its_backend(tmp_path):
    catalog, dataset = synthetic_catalog_dataset(num_items=16, num_users=4)
    tokenizer = train_tokenizer(list(catalog.titles) + list(dataset["prompt"]))
    args = ReReConfig(output_dir=str(tmp_path), num_generations=4, per_device_train_batch_size=8, max_steps=1,
                      beta=0.0, beam_width=6, report_to=[], use_cpu=True, activation_checkpointing=False,
                      save_strategy="no", disable_tqdm=True)
    trainer = ReReTrainer(model=tiny_causal_lm(tokenizer), args=args, train_dataset=dataset,
                          processing_class=tokenizer, catalog=catalog)
    assert isinstance(trainer.decoding_backend, HFGenerate)
    trainer.decoding_backend = backend = CountingBackend()
    trainer.train()
    ((method, prompt_ids, num_beams, options, training),) = backend.calls  # 2 prompts x G=4: one search
    assert (method, len(prompt_ids), num_beams, training) == ("beam_search", 2, 6, False)
    assert options == DecodingOptions.from_args(args, pad_token_id=tokenizer.pad_token_id)
