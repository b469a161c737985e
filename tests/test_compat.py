"""One test per private or version-dependent TRL / transformers name that `trl_rere._compat` holds: each fails when
upstream renames or removes what ReRe relies on, and says which name moved."""

import inspect
import os
import re
import warnings

import pytest
import torch


os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import trl.trainer.grpo_trainer as grpo_module  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import TrainingArguments  # noqa: E402
from trl import GRPOTrainer  # noqa: E402
from trl.trainer.utils import add_fused_lm_head  # noqa: E402

from trl_rere import ReReConfig, ReReTrainer, _compat  # noqa: E402
from trl_rere.testing import tiny_causal_lm, train_tokenizer  # noqa: E402


TITLES = ["red ball", "blue car", "green kite", "pink doll"]
ROWS = [{"prompt": f'History: "{t}"\n### Response:\n', "target": TITLES[(k + 1) % 4]} for k, t in enumerate(TITLES)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([r["prompt"] + f'"{t}"\n' for r in ROWS for t in TITLES], vocab_size=300)


@pytest.fixture(scope="module")
def trainer(tokenizer, tmp_path_factory):
    """A ReReTrainer that is built, never trained."""
    args = ReReConfig(output_dir=str(tmp_path_factory.mktemp("out")), num_generations=2, per_device_train_batch_size=2,
                      max_steps=1, beta=0.0, report_to=[], use_cpu=True, activation_checkpointing=False,
                      save_strategy="no", disable_tqdm=True)
    model = tiny_causal_lm(tokenizer, hidden_size=32)
    return ReReTrainer(model=model, args=args, train_dataset=Dataset.from_list(ROWS), processing_class=tokenizer,
                       catalog=TITLES)


def test_metric_buffer_is_what_grpo_logs(trainer):
    # GRPOTrainer.log averages trainer._metrics[mode] into the step's logs and clears it.
    trainer.model.train()
    _compat.metric_buffer(trainer, "train")["rere/probe"].extend([1.0, 3.0])
    trainer.log({"loss": 0.0})
    assert trainer.state.log_history[-1]["rere/probe"] == 2.0
    assert "rere/probe" not in _compat.metric_buffer(trainer, "train")


def test_log_without_flush_keeps_the_running_metrics_and_should_log(trainer):
    trainer.model.train()
    _compat.metric_buffer(trainer, "train")["rere/probe"].append(5.0)
    trainer.control.should_log = True
    _compat.log_without_flush(trainer, {"eval_HR@1": 0.5})
    assert trainer.state.log_history[-1]["eval_HR@1"] == 0.5
    assert "rere/probe" not in trainer.state.log_history[-1]
    assert _compat.metric_buffer(trainer, "train")["rere/probe"] == [5.0]  # GRPOTrainer.log would have flushed it
    assert trainer.control.should_log  # Trainer.log clears it; it is restored
    _compat.metric_buffer(trainer, "train").clear()


def test_summon_full_params_is_a_context_off_fsdp(trainer):
    with _compat.summon_full_params(trainer):
        pass


def test_per_token_logps_override_keeps_upstream_name_and_parameters():
    upstream = getattr(GRPOTrainer, _compat.PER_TOKEN_LOGPS_METHOD, None)
    assert upstream is not None, f"GRPOTrainer has no {_compat.PER_TOKEN_LOGPS_METHOD}: ReRe's override is dead code"
    parameters = list(inspect.signature(upstream).parameters)
    assert [p for p in _compat.PER_TOKEN_LOGPS_PARAMETERS if p not in parameters] == []
    assert _compat.PER_TOKEN_LOGPS_METHOD in vars(ReReTrainer)  # the override carries the upstream name


def test_rollout_func_notice_is_still_trls():
    assert _compat.ROLLOUT_FUNC_NOTICE in inspect.getsource(grpo_module)


def test_grpo_type_aliases_live_where_compat_takes_them():
    for name in ("EnvironmentFactory", "RewardFunc", "RolloutFunc"):
        assert getattr(grpo_module, name) is getattr(_compat, name)


def test_fused_head_forward_gives_the_log_probs_of_the_labels(tokenizer):
    model = tiny_causal_lm(tokenizer, hidden_size=32).eval()
    ids = torch.tensor([tokenizer(ROWS[0]["prompt"])["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    with torch.no_grad():
        log_probs, entropy = _compat.fused_head_forward(model, input_ids=ids, labels=ids)
    # position t holds the log-prob of token t + 1 (the labels are shifted as for a causal LM loss)
    expected = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(log_probs, expected, atol=1e-5, rtol=1e-5)
    assert entropy is not None and entropy.shape == log_probs.shape


def test_cache_arg_names_the_forward_cache(tokenizer):
    model = tiny_causal_lm(tokenizer, hidden_size=32).eval()
    ids = torch.tensor([tokenizer(ROWS[0]["prompt"])["input_ids"]])
    with torch.no_grad():
        head = model(input_ids=ids[:, :-1], use_cache=True)
        cache = getattr(head, _compat.CACHE_ARG)
        assert cache is not None
        tail = model(input_ids=ids[:, -1:], **{_compat.CACHE_ARG: cache}).logits
        full = model(input_ids=ids).logits
    torch.testing.assert_close(tail[:, -1], full[:, -1], atol=1e-5, rtol=1e-5)


def test_checkpointing_arg_is_the_undeprecated_name(tmp_path):
    names = {f.name for f in __import__("dataclasses").fields(TrainingArguments)}
    assert _compat.CHECKPOINTING_ARG in names and _compat.CHECKPOINTING_KWARGS_ARG in names
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        args = ReReConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True)  # TRL's default: checkpointing on
        assert _compat.checkpointing(args) and args.gradient_checkpointing
        args = ReReConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **{_compat.CHECKPOINTING_ARG: False})
        assert not _compat.checkpointing(args) and not args.gradient_checkpointing
    assert _compat.checkpointing_kwargs(args) is None


def test_checkpointing_alias_notice_is_silenced_where_trl_reads_it(tokenizer):
    # TRL's unwrap_model_for_generation still reads the deprecated alias; when it stops, drop quiet_checkpointing_alias.
    from trl.models import utils as trl_model_utils

    assert "is_gradient_checkpointing" in inspect.getsource(trl_model_utils)
    model = tiny_causal_lm(tokenizer, hidden_size=32)
    with pytest.warns(FutureWarning) as caught:
        model.is_gradient_checkpointing  # noqa: B018
    assert any(re.search(_compat._CHECKPOINTING_ALIAS_WARNING, str(w.message)) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        with _compat.quiet_checkpointing_alias():
            model.is_gradient_checkpointing  # noqa: B018
