"""ReReTrainer as a drop-in GRPOTrainer: its signature and argument forwarding, config-time checks, one prompt
tokenization for RL and evaluation, the paper's KL gradient, prompt-length checks and the no-signal warning."""

import inspect
import logging
import os

import pytest
import torch


os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from datasets import Dataset  # noqa: E402
from tokenizers import processors  # noqa: E402
from trl import GRPOTrainer  # noqa: E402

from trl_rere import ItemCatalog, ItemTrie, ReReConfig, ReReTrainer  # noqa: E402
from trl_rere.decoding import tokenize_prompts  # noqa: E402
from trl_rere.testing import tiny_causal_lm, train_tokenizer  # noqa: E402


TITLES = [f"{c} {t}" for c in ("red", "blue", "green", "pink") for t in ("ball", "car", "doll", "kite")]
G = 4


def prompt_for(title):
    return f'History: "{title}"\n### Response:\n'


ROWS = [{"prompt": prompt_for(t), "target": TITLES[(k + 1) % 16], "user_id": f"u{k}"} for k, t in enumerate(TITLES)]


def make_args(tmp_path, **kw):
    defaults = dict(per_device_train_batch_size=2 * G, num_generations=G, max_steps=1, logging_steps=1,
                    learning_rate=1e-3, report_to=[], use_cpu=True, activation_checkpointing=False, save_strategy="no",
                    disable_tqdm=True, seed=0)
    defaults.update(kw)
    return ReReConfig(output_dir=str(tmp_path / "out"), **defaults)


def save_model(tokenizer, path, **config):
    tiny_causal_lm(tokenizer, hidden_size=32, **config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tokenizer = train_tokenizer([prompt_for(a) + f'"{b}"\n' for a in TITLES for b in TITLES], vocab_size=512)
    return save_model(tokenizer, tmp_path_factory.mktemp("tiny")), tokenizer


# -- the constructor ---------------------------------------------------------------------------------------------
def test_signature_is_grpo_trainers_plus_keyword_only_catalog():
    grpo = list(inspect.signature(GRPOTrainer.__init__).parameters)
    rere = inspect.signature(ReReTrainer.__init__).parameters
    assert list(rere)[: len(grpo)] == grpo  # same names, same order: positional calls mean the same thing
    assert list(rere)[len(grpo):] == ["catalog"]
    assert rere["catalog"].kind is inspect.Parameter.KEYWORD_ONLY


def test_unknown_argument_is_a_type_error(tiny, tmp_path):
    path, tokenizer = tiny
    with pytest.raises(TypeError, match="peft_confg"):
        ReReTrainer(model=path, args=make_args(tmp_path), train_dataset=Dataset.from_list(ROWS), catalog=TITLES,
                    processing_class=tokenizer, peft_confg="typo")


def test_every_grpo_argument_is_forwarded(tiny, tmp_path, monkeypatch):
    """quantization_config (and the rest) reach GRPOTrainer.__init__ instead of being dropped."""
    path, tokenizer = tiny
    seen = {}

    class Stop(Exception):
        pass

    def fake_init(self, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(GRPOTrainer, "__init__", fake_init)
    marker, callbacks, optimizers = object(), [object()], (None, None)
    with pytest.raises(Stop):
        ReReTrainer(path, None, make_args(tmp_path), Dataset.from_list(ROWS), None, tokenizer, None, callbacks,
                    optimizers, marker, catalog=TITLES)
    assert seen["quantization_config"] is marker and seen["callbacks"] is callbacks
    assert seen["processing_class"] is tokenizer and seen["peft_config"] is None
    assert seen["rollout_func"].__func__ is ReReTrainer.rollout  # ReRe's sampling, through TRL's public hook


@pytest.mark.parametrize("name", ["tools", "rollout_func", "environment_factory"])
def test_generation_hooks_are_refused(tiny, tmp_path, name):
    path, tokenizer = tiny
    with pytest.raises(ValueError, match=name):
        ReReTrainer(model=path, args=make_args(tmp_path), train_dataset=Dataset.from_list(ROWS), catalog=TITLES,
                    processing_class=tokenizer, **{name: lambda *a: None})


def test_catalog_smaller_than_the_group_is_refused(tiny, tmp_path):
    path, tokenizer = tiny
    rows = [dict(r, target=TITLES[0]) for r in ROWS]
    with pytest.raises(ValueError, match=r"3 distinct items but num_generations is 4"):
        ReReTrainer(model=path, args=make_args(tmp_path), train_dataset=Dataset.from_list(rows),
                    catalog=TITLES[:3], processing_class=tokenizer)


# -- the config --------------------------------------------------------------------------------------------------
def test_config_checks_reward_names(tmp_path):
    with pytest.raises(ValueError, match="rewards: unknown reward 'nope'"):
        make_args(tmp_path, rewards=["nope"])
    assert make_args(tmp_path, rewards="rule").rewards == ["rule"]


def test_config_paper_defaults(tmp_path):
    args = make_args(tmp_path)
    assert args.use_bias_correction_kl is False  # the plain k3 estimator
    assert args.warmup_steps == 0.03  # transformers 5: a fraction of the training steps
    assert args.completion_template == '"{title}"\n'
    assert make_args(tmp_path, item_format="sid").completion_template == "{title}\n"
    assert not hasattr(args, "warmup_ratio")


def test_config_docstring_lists_every_rere_field():
    from dataclasses import fields

    from trl import GRPOConfig

    own = {f.name for f in fields(ReReConfig)} - {f.name for f in fields(GRPOConfig)}
    assert own, "ReReConfig has fields of its own"
    doc = ReReConfig.__doc__
    assert "Parameters:" in doc
    for name in own:
        assert f"\n        {name} (`" in doc, name
        assert next(f for f in fields(ReReConfig) if f.name == name).metadata.get("help"), name


def test_warmup_fraction_is_applied(tiny, tmp_path):
    path, tokenizer = tiny
    trainer = ReReTrainer(model=path, args=make_args(tmp_path, max_steps=100), train_dataset=Dataset.from_list(ROWS),
                          catalog=TITLES, processing_class=tokenizer)
    assert trainer.args.get_warmup_steps(100) == 3


# -- one prompt tokenization -------------------------------------------------------------------------------------
def bos_tokenizer():
    """A byte-level BPE tokenizer that prepends BOS to every text, as Llama's does."""
    tokenizer = train_tokenizer([prompt_for(a) + f'"{b}"\n' for a in TITLES for b in TITLES] + ["<s>"],
                                vocab_size=512)
    tokenizer.add_special_tokens({"bos_token": "<s>"})
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    assert tokenizer("x")["input_ids"][0] == bos
    return tokenizer


def test_rl_and_evaluation_see_the_same_prompt_tokens(tmp_path):
    tokenizer = bos_tokenizer()
    path = save_model(tokenizer, tmp_path / "bos-model")
    recorded = []

    class Recording(ReReTrainer):
        def rollout(self, prompts, trainer=None):
            out = super().rollout(prompts, trainer)
            recorded.append((prompts, out["prompt_ids"]))
            return out

    trainer = Recording(model=path, args=make_args(tmp_path, beta=0.0), train_dataset=Dataset.from_list(ROWS),
                        catalog=TITLES, processing_class=tokenizer)
    trainer.train()
    ((prompts, rl_ids),) = recorded
    trie = ItemTrie.from_catalog(ItemCatalog.from_titles(TITLES), tokenizer)
    eval_ids = tokenize_prompts(tokenizer, prompts, trie)  # what constrained_beam_search / evaluate_ranking feed
    assert rl_ids == eval_ids
    assert all(ids[0] == tokenizer.bos_token_id for ids in rl_ids)


# -- the KL term -------------------------------------------------------------------------------------------------
def _kl_gradients(path, tokenizer, tmp_path, **config):
    """Gradients of the loss at zero advantages with the reference 8 nats above the policy on every token: only the
    KL term is left. Returns (gradients from the trainer's loss, gradients from the plain k3 formula)."""
    beta = 1e-3
    trainer = ReReTrainer(model=path, args=make_args(tmp_path, beta=beta, **config),
                          train_dataset=Dataset.from_list(ROWS), catalog=TITLES, processing_class=tokenizer)
    rows = [dict(r) for r in ROWS[:2] for _ in range(G)]
    trainer.model.train()
    trainer._rows = rows  # as training_step records them
    trainer.current_gradient_accumulation_steps = 1  # as the training loop sets it
    inputs = trainer._generate_and_score_completions(rows)
    model = trainer.model
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    n = inputs["completion_ids"].shape[1]

    def logps():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -n - 1 : -1].float()
        return logits.log_softmax(-1).gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)

    inputs["advantages"] = torch.zeros_like(inputs["advantages"])
    inputs["ref_per_token_logps"] = logps().detach() + 8.0
    model.zero_grad()
    trainer.compute_loss(model, inputs).backward()
    ours = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    logp, cmask = logps(), inputs["completion_mask"].float()
    delta = inputs["ref_per_token_logps"] - logp
    k3 = torch.exp(delta) - delta - 1
    (beta * ((k3 * cmask).sum(-1) / cmask.sum(-1)).mean()).backward()
    plain = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return ours, plain


def test_kl_gradient_is_the_plain_k3_gradient(tiny, tmp_path):
    path, tokenizer = tiny
    ours, plain = _kl_gradients(path, tokenizer, tmp_path)
    assert ours.keys() == plain.keys()
    scale = max(g.abs().max() for g in plain.values())
    assert scale > 0
    for k in plain:
        torch.testing.assert_close(ours[k], plain[k], rtol=1e-3, atol=1e-4 * scale)
    # TRL's bias-corrected term pulls about 370x less for a token 8 nats below the reference
    corrected, _ = _kl_gradients(path, tokenizer, tmp_path, use_bias_correction_kl=True)
    assert max(g.abs().max() for g in corrected.values()) < scale / 50


# -- prompt length -----------------------------------------------------------------------------------------------
def test_prompt_over_max_prompt_length_names_the_row(tiny, tmp_path):
    path, tokenizer = tiny
    rows = [dict(r) for r in ROWS]
    rows[5]["prompt"] = "word " * 60 + rows[5]["prompt"]
    trainer = ReReTrainer(model=path, args=make_args(tmp_path, max_prompt_length=40, shuffle_dataset=False,
                                                     per_device_train_batch_size=6 * G),
                          train_dataset=Dataset.from_list(rows), catalog=TITLES, processing_class=tokenizer)
    with pytest.raises(ValueError, match=r"more than max_prompt_length=40 \(user_id 'u5'"):
        trainer.train()


def test_prompt_beyond_the_model_context_names_the_row(tmp_path):
    tokenizer = train_tokenizer([prompt_for(a) + f'"{b}"\n' for a in TITLES for b in TITLES], vocab_size=512)
    path = save_model(tokenizer, tmp_path / "short-context", max_position_embeddings=48)
    rows = [dict(r) for r in ROWS]
    rows[5]["prompt"] = "word " * 60 + rows[5]["prompt"]
    trainer = ReReTrainer(model=path, args=make_args(tmp_path, shuffle_dataset=False, per_device_train_batch_size=6 * G),
                          train_dataset=Dataset.from_list(rows), catalog=TITLES, processing_class=tokenizer)
    with pytest.raises(ValueError, match=r"beyond the model's context of 48 positions \(user_id 'u5'"):
        trainer.train()


# -- no signal ---------------------------------------------------------------------------------------------------
def test_warns_when_rl_gets_no_signal(tiny, tmp_path, caplog):
    """Targets the beams never reach (every prompt's target is an item its G=2 beams do not contain): after
    `no_signal_steps` rounds with the target in no group the trainer says so, once."""
    path, tokenizer = tiny
    probe = ReReTrainer(model=path, args=make_args(tmp_path, beta=0.0), train_dataset=Dataset.from_list(ROWS),
                        catalog=TITLES, processing_class=tokenizer)
    from trl_rere import constrained_beam_search

    beams = constrained_beam_search(probe.model, tokenizer, [r["prompt"] for r in ROWS], probe.trie, num_beams=4)
    rows = [dict(r, target=next(t for t in TITLES if t not in b.titles)) for r, b in zip(ROWS, beams)]
    args = make_args(tmp_path, beta=0.0, num_generations=2, per_device_train_batch_size=8, max_steps=3,
                     learning_rate=0.0, no_signal_steps=2)
    trainer = ReReTrainer(model=path, args=args, train_dataset=Dataset.from_list(rows), catalog=TITLES,
                          processing_class=tokenizer)
    with caplog.at_level(logging.WARNING, logger="trl_rere.trainer"):
        trainer.train()
    assert [h["rere/target_in_group"] for h in trainer.state.log_history if "rere/target_in_group" in h] == [0.0] * 3
    warnings = [r.getMessage() for r in caplog.records if "RL receives no signal" in r.getMessage()]
    assert len(warnings) == 1 and "for 2 generation rounds" in warnings[0] and "beam_width" in warnings[0]


def test_sid_catalog_without_its_code_tokens_is_refused(tmp_path):
    """With item_format="sid" every code must be one token; a tokenizer without them fails at construction."""
    from trl_rere import SIDTokenError, add_sid_tokens
    from trl_rere.data import synthetic_sid_dataset

    catalog, dataset = synthetic_sid_dataset(num_items=16, num_users=8)
    tokenizer = train_tokenizer(list(dataset["prompt"]), vocab_size=400)
    path = save_model(tokenizer, tmp_path / "no-codes")
    args = make_args(tmp_path, item_format="sid")
    with pytest.raises(SIDTokenError, match="add_sid_tokens"):
        ReReTrainer(model=path, args=args, train_dataset=dataset, catalog=catalog, processing_class=tokenizer)
    add_sid_tokens(tokenizer, catalog)
    path = save_model(tokenizer, tmp_path / "with-codes")
    trainer = ReReTrainer(model=path, args=args, train_dataset=dataset, catalog=catalog, processing_class=tokenizer)
    assert trainer.trie.max_length == 5  # three codes, the newline, EOS


@pytest.mark.skipif(torch.cuda.is_available(), reason="the check is for machines without CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_accelerate_mixed_precision_on_a_cpu_names_the_fix(monkeypatch, precision):
    # what `accelerate launch --config_file examples/accelerate_configs/deepspeed_zero2.yaml` sets on a CPU machine
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", precision)
    with pytest.raises(ValueError, match=f"asks for {precision} mixed precision.*--mixed_precision no"):
        ReReConfig(output_dir="x", report_to=[])
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert ReReConfig(output_dir="x", report_to=[]).bf16 is False
