"""`ReReConfig`: GRPO's configuration with the paper's defaults and ReRe's sampling options."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from trl import GRPOConfig

from .trie import DEFAULT_COMPLETION_TEMPLATE, DEFAULT_PROMPT_SUFFIX


SAMPLING_STRATEGIES = ("beam", "sample", "dynamic")


@dataclass
class ReReConfig(GRPOConfig):
    r"""
    Configuration for [`ReReTrainer`]: every [`trl.GRPOConfig`] field, with the ReRe paper's defaults
    (`num_generations=16`, `beta=1e-3`, `learning_rate=1e-5`, `loss_type="grpo"`, cosine schedule with 3% warmup,
    `max_grad_norm=0.3`, reference model synced), plus the fields below.

    Example:
    ```python
    >>> from trl_rere import ReReConfig
    >>> args = ReReConfig(output_dir="rere-toys", per_device_train_batch_size=64, sampling_strategy="beam")
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
    loss_type: str = field(
        default="grpo",
        metadata={"help": "GRPO loss aggregation; ReRe uses the per-sequence mean ('grpo'). 'dapo', 'dr_grpo', ... "
                  "work as in TRL."},
    )
    temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature; keep 1.0 with beam search, whose ranks use the raw log-probs."},
    )
    warmup_ratio: float = field(default=0.03, metadata={"help": "Linear warmup fraction (ReRe: 0.03)."})
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
        metadata={"help": "Replace the last member of each group that lacks the target with the ground-truth title."},
    )
    completion_template: str = field(
        default=DEFAULT_COMPLETION_TEMPLATE,
        metadata={"help": "How a title is written as a completion; must contain '{title}'. EOS is appended."},
    )
    prompt_suffix: str | None = field(
        default=DEFAULT_PROMPT_SUFFIX,
        metadata={"help": "The fixed ending every prompt has; titles are tokenized after it so BPE merges at the "
                  "boundary match what the model sees. None tokenizes completions on their own."},
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

    def __post_init__(self):
        # Without CUDA, a multi-process launch must use gloo or accelerate and DeepSpeed disagree on the world size.
        if self.ddp_backend is None and not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            self.ddp_backend = "gloo"
        if self.bf16 is None and not self.fp16 and not torch.cuda.is_available():
            self.bf16 = False  # TRL turns bf16 on by default; on a CPU that only slows training down.
        if self.beta == 0.0:
            self.sync_ref_model = False  # no reference model exists to sync (TRL would raise)
        # transformers 5 dropped TrainingArguments.warmup_ratio (warmup_steps < 1 is now the ratio), so this field
        # would otherwise be ignored and training would run without warmup. An explicit warmup_steps wins.
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not self.warmup_steps and self.warmup_ratio:
            self.warmup_steps = self.warmup_ratio
        super().__post_init__()
        if self.sampling_strategy not in SAMPLING_STRATEGIES:
            raise ValueError(f"sampling_strategy must be one of {SAMPLING_STRATEGIES}, got {self.sampling_strategy!r}")
        if self.beam_width is not None and self.beam_width < self.num_generations:
            raise ValueError(
                f"beam_width ({self.beam_width}) must be >= num_generations ({self.num_generations}): each group "
                f"keeps the best num_generations of the beams"
            )
        if self.dynamic_sampling_factor < 1.0:
            raise ValueError(f"dynamic_sampling_factor must be >= 1, got {self.dynamic_sampling_factor}")
        if "{title}" not in self.completion_template:
            raise ValueError(f"completion_template {self.completion_template!r} must contain '{{title}}'")
        if isinstance(self.rewards, str):
            self.rewards = [self.rewards]
