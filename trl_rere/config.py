"""`ReReConfig`: GRPO's configuration with the paper's defaults and ReRe's sampling options."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch
from trl import GRPOConfig, SFTConfig

from .item_format import DEFAULT_PROMPT_SUFFIX, ITEM_FORMATS, get_item_format
from .rewards import check_reward_names
from ._compat import CHECKPOINTING_ARG
from .decoding.options import SAMPLING_STRATEGIES


@dataclass
class ReReConfig(GRPOConfig):
    r"""
    Configuration class for [`ReReTrainer`].

    Every [`trl.GRPOConfig`] field is accepted. The defaults follow the ReRe paper (`num_generations=16`, `beta=1e-3`,
    the plain k3 KL estimator, `learning_rate=1e-5`, `loss_type="grpo"`, cosine schedule with 3% warmup,
    `max_grad_norm=0.3`, reference model synced); the fields below are ReRe's own.

    Parameters:
        > Parameters that control how groups are drawn

        sampling_strategy (`str`, *optional*, defaults to `"beam"`):
            How each group of `num_generations` (G) completions is drawn, always constrained to the catalog trie:
            `"beam"` (ReRe: one beam search per prompt, G distinct items ranked by log-probability), `"sample"`
            (temperature sampling, duplicates possible) or `"dynamic"` (draw `dynamic_sampling_factor * G` samples,
            keep the target and the most frequent distinct negatives).
        beam_width (`int` or `None`, *optional*, defaults to `None`):
            Beams searched per prompt (>= `num_generations`; the best G are kept). HF beam search is approximate, so a
            wider beam finds the model's top G more reliably. `None` searches `num_generations` beams.
        dynamic_sampling_factor (`float`, *optional*, defaults to `1.5`):
            With `sampling_strategy="dynamic"`: samples drawn per prompt, as a multiple of G.
        add_gt (`bool`, *optional*, defaults to `False`):
            Replace the last member of each group that lacks the target with the target item.
        shared_prompt_cache (`bool`, *optional*, defaults to `False`):
            Use the beam-search KV cache that reorders only the generated positions (`trl_rere.beam_cache`): faster on
            CPUs, about even on GPUs, and it holds two copies of the cache during the search.
        shared_prompt_logprobs (`bool`, *optional*, defaults to `False`):
            Score each group's completions on one forward pass of their shared prompt (`trl_rere.group_logprobs`),
            for the policy and the reference model, instead of one pass over prompt + completion per completion: the
            same log-probs up to float rounding, far less compute when prompts are long. Needs
            `activation_checkpointing=False` (checkpointing drops the KV cache in training).

        > Parameters that control how items are written

        item_format (`str`, *optional*, defaults to `"title"`):
            How an item is written as a completion: `"title"` (`'"{title}"\n'`, the authors' format) or `"sid"`
            (`'{title}\n'` with the item's semantic-ID string, MiniOneRec's format). See `trl_rere.item_format`.
        completion_template (`str` or `None`, *optional*, defaults to `None`):
            Overrides the item format's completion; must contain `{title}` once. EOS is appended.
        prompt_suffix (`str` or `None`, *optional*, defaults to `"### Response:\n"`):
            The fixed ending every prompt has; items are tokenized after it so that BPE merges at the boundary match
            what the model sees. `None` tokenizes completions on their own.
        max_prompt_length (`int` or `None`, *optional*, defaults to `None`):
            Longest prompt, in tokens, that the trainer accepts; a longer one is an error naming its row. To fit
            prompts, load the data with `load_amazon(..., tokenizer=..., max_prompt_length=...)`, which drops the
            oldest history items. Prompts must always fit the model's context with the longest item after them.

        > Parameters that control the rewards and logging

        rewards (`list[str]`, *optional*, defaults to `["rule", "ranking"]`):
            Built-in rewards used when the trainer gets no `reward_funcs`: `"rule"` (1 for the target) and
            `"ranking"` (ReRe's rank penalty on negatives). `["rule"]` is the rule-only ablation.
        ranking_metrics_ks (`list[int]`, *optional*, defaults to `[1, 5, 10]`):
            K values for HR@K / NDCG@K of the target among each training group, logged every step (empty: off).
        no_signal_steps (`int`, *optional*, defaults to `10`):
            Warn when the target has been in none of the groups for this many consecutive generation rounds: every
            reward is then 0 and RL learns nothing. `0` turns the warning off.

    Example:
    ```python
    >>> from trl_rere import ReReConfig
    >>> args = ReReConfig(output_dir="rere-toys", per_device_train_batch_size=64, gradient_accumulation_steps=2)
    >>> args.num_generations, args.beta, args.use_bias_correction_kl, args.sampling_strategy
    (16, 0.001, False, 'beam')
    >>> ReReConfig(output_dir="rere-sid", item_format="sid").completion_template
    '{title}\n'
    >>> ReReConfig(output_dir="x", rewards=["rule", "rankng"])
    Traceback (most recent call last):
    ...
    ValueError: rewards: unknown reward 'rankng': use one of [...], a callable or a reward model id
    ```
    """

    learning_rate: float = field(default=1e-5, metadata={"help": "Initial learning rate (ReRe: 1e-5)."})
    num_generations: int | None = field(
        default=16, metadata={"help": "G: beams (distinct items) per prompt; ReRe uses 16."}
    )
    per_device_train_batch_size: int = field(
        default=16,
        metadata={"help": "Completions per device per step; a multiple of num_generations so groups stay whole "
                  "(the paper: 64)."},
    )
    beta: float = field(default=1e-3, metadata={"help": "KL coefficient to the reference model (ReRe: 1e-3)."})
    use_bias_correction_kl: bool = field(
        default=False,
        metadata={"help": "Multiply the k3 KL term by the importance ratio (TRL's default). ReRe uses the plain k3 "
                  "estimator, whose gradient this would change."},
    )
    loss_type: str = field(
        default="grpo",
        metadata={"help": "GRPO loss aggregation; ReRe uses the per-sequence mean ('grpo'). 'dapo', 'dr_grpo', ... "
                  "work as in TRL."},
    )
    temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature; keep 1.0 with beam search, whose ranks use the raw log-probs."},
    )
    warmup_steps: float = field(
        default=0.03,
        metadata={"help": "Warmup: a number of steps, or below 1 a fraction of the training steps (ReRe: 0.03)."},
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule (ReRe: cosine)."})
    max_grad_norm: float = field(default=0.3, metadata={"help": "Gradient clipping norm (ReRe: 0.3)."})
    sync_ref_model: bool = field(
        default=True, metadata={"help": "Sync the reference model with the policy during training (ReRe: on)."}
    )

    sampling_strategy: str = field(
        default="beam",
        metadata={
            "help": "How each group of G completions is drawn, always constrained to the catalog trie: 'beam' (ReRe: "
            "one beam search per prompt, G distinct items ranked by log-probability), 'sample' (temperature "
            "sampling, duplicates possible), 'dynamic' (draw dynamic_sampling_factor*G samples, keep the target and "
            "the most frequent distinct negatives).",
            "choices": list(SAMPLING_STRATEGIES),
        },
    )
    beam_width: int | None = field(
        default=None,
        metadata={"help": "Beams searched per prompt (>= num_generations; the best G are kept). HF beam search is "
                  "approximate, so a wider beam finds the model's top G more reliably. Defaults to num_generations."},
    )
    dynamic_sampling_factor: float = field(
        default=1.5, metadata={"help": "With sampling_strategy='dynamic': samples drawn per prompt, as a multiple of G."}
    )
    add_gt: bool = field(
        default=False,
        metadata={"help": "Replace the last member of each group that lacks the target with the target item."},
    )
    shared_prompt_cache: bool = field(
        default=False,
        metadata={"help": "Beam-search KV cache that reorders only generated positions: faster on CPU, about even on "
                  "GPU, twice the cache memory during the search."},
    )
    shared_prompt_logprobs: bool = field(
        default=False,
        metadata={"help": "Score a group's completions on one forward pass of their shared prompt (policy and "
                  "reference): same log-probs, less compute; needs activation_checkpointing=False."},
    )
    # transformers deprecates `gradient_checkpointing` for `activation_checkpointing` (gone in v6) and warns whenever
    # the old name is set; TRL sets the old name's default (True), so every config warned. The default moves to the
    # new name in __post_init__; a user who passes the old name still gets transformers' notice.
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Deprecated alias of activation_checkpointing (removed in transformers v6); None: TRL's "
                  "default, True."},
    )
    item_format: str = field(
        default="title",
        metadata={"help": "How an item is written as a completion: 'title' ('\"{title}\"\\n') or 'sid' "
                  "('{title}\\n', semantic-ID tokens).", "choices": sorted(ITEM_FORMATS)},
    )
    completion_template: str | None = field(
        default=None,
        metadata={"help": "Overrides the item format's completion; must contain '{title}' once. EOS is appended."},
    )
    prompt_suffix: str | None = field(
        default=DEFAULT_PROMPT_SUFFIX,
        metadata={"help": "The fixed ending every prompt has; items are tokenized after it so BPE merges at the "
                  "boundary match what the model sees. None tokenizes completions on their own."},
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={"help": "Longest prompt in tokens the trainer accepts (an error names a longer row). Fit prompts "
                  "with load_amazon(..., max_prompt_length=...), which drops the oldest history items."},
    )
    rewards: list[str] = field(
        default_factory=lambda: ["rule", "ranking"],
        metadata={"help": "Built-in rewards used when the trainer gets no reward_funcs: 'rule' (1 for the target) "
                  "and 'ranking' (ReRe's rank penalty on negatives). ['rule'] is the rule-only ablation."},
    )
    ranking_metrics_ks: list[int] = field(
        default_factory=lambda: [1, 5, 10],
        metadata={"help": "K values for HR@K/NDCG@K of the target among each training group, logged every step "
                  "(empty list: off)."},
    )
    no_signal_steps: int = field(
        default=10,
        metadata={"help": "Warn when no group has contained the target for this many consecutive generation rounds "
                  "(RL then gets no signal); 0: off."},
    )

    def __post_init__(self):
        apply_device_defaults(self)
        if self.beta == 0.0:
            self.sync_ref_model = False  # no reference model exists to sync (TRL would raise)
        if self.gradient_checkpointing is None and getattr(self, CHECKPOINTING_ARG) is None:
            setattr(self, CHECKPOINTING_ARG, True)  # TRL's default
        if self.shared_prompt_logprobs and (self.gradient_checkpointing or getattr(self, CHECKPOINTING_ARG)):
            raise ValueError("shared_prompt_logprobs=True needs activation_checkpointing=False (formerly "
                             "gradient_checkpointing=False): checkpointing drops the KV cache the shared prompt pass "
                             "hands to the completions")
        if isinstance(self.rewards, str):
            self.rewards = [self.rewards]
        if self.generation_batch_size is None and self.steps_per_generation is None:
            # TRL would refuse this below with its own numbers (generation_batch_size); say it in the user's terms
            check_whole_groups(self.num_generations, self.per_device_train_batch_size, self.gradient_accumulation_steps)
        super().__post_init__()
        self._check_rere_fields()

    def _check_rere_fields(self) -> None:
        if self.sampling_strategy not in SAMPLING_STRATEGIES:
            raise ValueError(f"sampling_strategy must be one of {SAMPLING_STRATEGIES}, got {self.sampling_strategy!r}")
        if self.beam_width is not None and self.beam_width < self.num_generations:
            raise ValueError(
                f"beam_width ({self.beam_width}) must be >= num_generations ({self.num_generations}): each group "
                f"keeps the best num_generations of the beams"
            )
        if self.dynamic_sampling_factor < 1.0:
            raise ValueError(f"dynamic_sampling_factor must be >= 1, got {self.dynamic_sampling_factor}")
        # Validates the format's name and the template, and fills the template in from the format.
        self.completion_template = get_item_format(self.item_format, self.completion_template).completion_template
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise ValueError(f"max_prompt_length must be a positive integer or None, got {self.max_prompt_length}")
        if self.no_signal_steps < 0:
            raise ValueError(f"no_signal_steps must be >= 0, got {self.no_signal_steps}")
        check_reward_names(self.rewards, argument="rewards")
        if self.use_vllm:
            raise NotImplementedError(
                "ReReTrainer does not support use_vllm yet: its beam search runs through transformers' generate(). "
                "Set use_vllm=False."
            )
        if self.use_transformers_continuous_batching:
            raise NotImplementedError(
                "ReReTrainer does not support use_transformers_continuous_batching: continuous batching cannot run "
                "a constrained beam search. Set use_transformers_continuous_batching=False."
            )
        # One beam search per prompt needs all G completions of a prompt on the same process.
        check_whole_groups(self.num_generations, self.per_device_train_batch_size, self.steps_per_generation)
        g_eval = self.num_generations_eval or self.num_generations
        if self.do_eval and self.eval_strategy != "no" and self.per_device_eval_batch_size % g_eval != 0:
            raise ValueError(
                f"per_device_eval_batch_size ({self.per_device_eval_batch_size}) must be a multiple of the eval "
                f"group size ({g_eval}) so each process holds whole groups"
            )


def check_whole_groups(num_generations: int, per_device_train_batch_size: int, steps_per_generation: int) -> None:
    """Raises a `ValueError` naming both numbers and a fix when a process cannot hold whole groups of G completions.

    ReReTrainer runs one beam search per prompt, so the completions a process draws per generation round
    (`per_device_train_batch_size x steps_per_generation`, which defaults to `gradient_accumulation_steps`) must be a
    multiple of `num_generations`.

    Example:
    ```python
    >>> check_whole_groups(16, 64, 2)
    >>> check_whole_groups(64, 16, 1)
    Traceback (most recent call last):
    ...
    ValueError: num_generations (64) must divide the completions each process draws per generation round: ...
    ```
    """
    per_process = per_device_train_batch_size * steps_per_generation
    if num_generations and per_process % num_generations == 0:
        return
    divisors = [g for g in range(2, min(per_process, num_generations or 1) + 1) if per_process % g == 0]
    smaller = f", or --num_generations {divisors[-1]} (a divisor of {per_process})" if divisors else ""
    batch = num_generations * max(1, math.ceil(per_device_train_batch_size / num_generations))
    raise ValueError(
        f"num_generations ({num_generations}) must divide the completions each process draws per generation round: "
        f"per_device_train_batch_size ({per_device_train_batch_size}) x steps_per_generation ({steps_per_generation}) "
        f"= {per_process} (steps_per_generation defaults to gradient_accumulation_steps). ReReTrainer runs one beam "
        f"search per prompt, so each process must hold whole groups. Pass --per_device_train_batch_size {batch} (a multiple of "
        f"{num_generations}){smaller}."
    )


def apply_device_defaults(args) -> None:
    """Device defaults for a TrainingArguments subclass, applied before its `__post_init__`; values set are kept.

    - bf16: TRL turns it on whenever fp16 is off. Keep that where the GPU supports bf16; without CUDA, or on a GPU
      without bf16 (V100, T4), train in float32 instead of failing in transformers' precision check.
    - A multi-process launch without CUDA needs gloo (or accelerate and DeepSpeed disagree on the world size) and
      `use_cpu` (or the Trainer sees the process group but runs as one process, and the ranks fall out of step).
      `accelerate launch --cpu` is no substitute: it starts a single process whatever `--num_processes` says.
    - Without CUDA, pinned memory does nothing but warn, and an accelerate launch that asks for bf16 or fp16 (the
      shipped DeepSpeed configs do) is an error naming `--mixed_precision no`.
    - `gradient_checkpointing` is transformers' deprecated name of `activation_checkpointing` (TRL still sets it, and
      the recipes may use it); moving the value over keeps transformers' FutureWarning out of every run.
    """
    cuda = torch.cuda.is_available()
    precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if not cuda and precision in ("bf16", "fp16"):
        # otherwise transformers stops on rank 0 only, deep in DeepSpeed's set-up ("ds bf16.enabled=True vs hf
        # bf16=False"), while the other ranks wait
        raise ValueError(
            f"accelerate launch asks for {precision} mixed precision (its config file's mixed_precision, or "
            f"--mixed_precision), and this machine has no CUDA GPU: on a CPU, launch with `accelerate launch "
            f"--mixed_precision no ...`"
        )
    if getattr(args, "bf16", None) is None and not getattr(args, "fp16", False):
        args.bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    if not cuda:
        args.dataloader_pin_memory = False
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            if getattr(args, "ddp_backend", None) is None:
                args.ddp_backend = "gloo"
            args.use_cpu = True
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
        if hasattr(args, new) and getattr(args, new) is None and getattr(args, old, None) is not None:
            setattr(args, new, getattr(args, old))
            setattr(args, old, None)


@dataclass
class ReReSFTConfig(SFTConfig):
    r"""
    TRL's [`trl.SFTConfig`] with [`ReReConfig`]'s device defaults (see `apply_device_defaults`), for the SFT warm
    start (`examples/sft.py`). Living in a module rather than in the script, it makes the `training_args.bin` the
    Trainer saves loadable anywhere `trl_rere` is installed.

    Example:
    ```python
    >>> from trl_rere.config import ReReSFTConfig
    >>> args = ReReSFTConfig(output_dir="sft", gradient_checkpointing=True)
    >>> args.activation_checkpointing, args.dataloader_pin_memory == torch.cuda.is_available()
    (True, True)
    ```
    """

    def __post_init__(self):
        apply_device_defaults(self)
        super().__post_init__()
