"""Every use of a private or version-dependent TRL / transformers name, in one place.

ReRe plugs into `GRPOTrainer` at a few points its public API does not cover. Each such point is a name here, and
tests/test_compat.py has a test per name that fails when upstream renames or removes it, so an upgrade breaks one
test that names the cause instead of a training run.
"""

from __future__ import annotations

import dataclasses
import warnings
from contextlib import contextmanager

from transformers import Trainer, TrainingArguments
from transformers.modeling_outputs import CausalLMOutputWithPast

# GRPOTrainer's reward/rollout type aliases live in its module, not in TRL's public namespace.
from trl.trainer.grpo_trainer import EnvironmentFactory, RewardFunc, RolloutFunc  # noqa: F401


# -- GRPOTrainer's scoring method -----------------------------------------------------------------------------------
# `ReReTrainer` overrides this private method (its one override of a GRPOTrainer private) to score each group's prompt
# once; the override falls back to `super()` for every case it does not handle. These are the parameters it passes on.
PER_TOKEN_LOGPS_METHOD = "_get_per_token_logps_and_entropies"
PER_TOKEN_LOGPS_PARAMETERS = (
    "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy", "compute_aux_loss",
)

# The notice GRPOTrainer gives when a `rollout_func` is passed: it is about TRL's API, which this package pins.
ROLLOUT_FUNC_NOTICE = "You are using 'rollout_func'"


def metric_buffer(trainer, mode: str):
    """GRPOTrainer's running metric lists for `mode` ("train" or "eval"): what is appended there is averaged and
    logged with the step's own metrics (`trainer._metrics[mode][name]`)."""
    return trainer._metrics[mode]


def summon_full_params(trainer):
    """GRPOTrainer's context that gathers FSDP parameters for generation (a no-op context off FSDP)."""
    return trainer._dist.summon_full_params(trainer.model_wrapped, recurse=False)


def log_without_flush(trainer, logs: dict[str, float]) -> None:
    """Logs through the base `transformers.Trainer.log`: `GRPOTrainer.log` would flush its running training averages
    into these logs. `Trainer.log` clears `control.should_log`; it is restored, so that logging from a callback does not
    cancel the trainer's own log of the step."""
    should_log = trainer.control.should_log
    Trainer.log(trainer, dict(logs))
    trainer.control.should_log = should_log


# -- the fused LM head ----------------------------------------------------------------------------------------------
# TRL's `add_fused_lm_head` patches a model's forward: with `fused_lm_head=True` and `labels` it returns `log_probs`
# (and `entropy`) per position instead of logits. Labels of -100 are not scored.
FUSED_LM_HEAD_ARG = "fused_lm_head"


def fused_head_forward(model, **inputs):
    """`model(**inputs, labels=..., fused_lm_head=True)`, returning `(log_probs, entropy)` per position."""
    out = model(**inputs, **{FUSED_LM_HEAD_ARG: True})
    return out.log_probs, getattr(out, "entropy", None)


# -- transformers renames -------------------------------------------------------------------------------------------
# transformers renamed `past_key_values` to `cache` (argument and output) within 5.x; both spellings are supported.
CACHE_ARG = "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"

# transformers deprecates `gradient_checkpointing*` for `activation_checkpointing*` (removed in v6).
_ARG_NAMES = {f.name for f in dataclasses.fields(TrainingArguments)}
CHECKPOINTING_ARG = "activation_checkpointing" if "activation_checkpointing" in _ARG_NAMES else "gradient_checkpointing"
CHECKPOINTING_KWARGS_ARG = f"{CHECKPOINTING_ARG}_kwargs"
# TRL reads the deprecated `model.is_gradient_checkpointing` (and toggles the old `gradient_checkpointing_*` methods)
# around every generation round (`disable_gradient_checkpointing`, `unwrap_model_for_generation`), and PEFT reads it
# when it wraps a model; the notice is theirs to act on, not the user's.
_CHECKPOINTING_ALIAS_WARNING = r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated"


def checkpointing(args) -> bool:
    """Whether the training arguments turn activation (gradient) checkpointing on, under either name."""
    return bool(getattr(args, CHECKPOINTING_ARG))


def checkpointing_kwargs(args) -> dict | None:
    """The checkpointing kwargs of the training arguments, under the name this transformers reads."""
    return getattr(args, CHECKPOINTING_KWARGS_ARG)


@contextmanager
def quiet_checkpointing_alias():
    """Silences transformers' v6 notice about the `gradient_checkpointing` model aliases that TRL still calls."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CHECKPOINTING_ALIAS_WARNING, category=FutureWarning)
        yield
