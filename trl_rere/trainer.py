"""`ReReTrainer`: TRL's GRPOTrainer whose groups are drawn from the catalog trie and whose rewards know beam ranks."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from accelerate.logging import get_logger
from accelerate.utils import gather_object, is_peft_model
from trl import GRPOTrainer
from trl.extras.profiling import profiling_context
from trl.models import unwrap_model_for_generation

from ._compat import (
    ROLLOUT_FUNC_NOTICE,
    EnvironmentFactory,
    RewardFunc,
    RolloutFunc,
    checkpointing_kwargs,
    metric_buffer,
    quiet_checkpointing_alias,
    summon_full_params,
)
from .catalog import ItemCatalog
from .config import ReReConfig
from .decoding import DecodingBackend, DecodingOptions, HFGenerate, draw_groups, tokenize_prompts
from .group_logprobs import group_log_probs
from .metrics import ranking_metrics
from .rewards import resolve_reward_funcs
from .trie import ItemTrie


if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset
    from peft import PeftConfig, PeftModel
    from transformers import (
        BitsAndBytesConfig,
        PreTrainedModel,
        PreTrainedTokenizerBase,
        ProcessorMixin,
        TrainerCallback,
    )

logger = get_logger(__name__)

# The per-completion fields the sampler hands to every reward function, next to the dataset columns.
BEAM_FIELDS = ("beam_rank", "beam_score", "beam_title", "beam_item_id", "group_id")


def _as_catalog(catalog) -> ItemCatalog:
    if isinstance(catalog, ItemCatalog):
        return catalog
    if isinstance(catalog, (str, os.PathLike)):
        return ItemCatalog.from_info_file(catalog)
    if isinstance(catalog, Sequence):
        return ItemCatalog.from_titles(catalog)
    raise TypeError(f"catalog must be an ItemCatalog, a path to an info file or a list of titles, got {type(catalog)}")


def _describe(row: dict) -> str:
    user = f"user_id {row['user_id']!r}, " if "user_id" in row else ""
    return f"{user}prompt starting {str(row.get('prompt', ''))[:60]!r}"


class ReReTrainer(GRPOTrainer):
    """GRPO for generative recommendation with ReRe's sampling and rewards.

    ReRe changes two things about [`trl.GRPOTrainer`]. Its completions are drawn from the item catalog: each unique
    prompt gets one beam search of `num_generations` (G) beams constrained to the catalog's token trie, so a group
    is G distinct real items ranked by the model's own log-probability (`sampling_strategy="sample"` / `"dynamic"`
    draw the groups by constrained sampling instead, for the ablations). And its rewards see those ranks: every
    completion's `beam_rank`, `beam_score`, `beam_title`, `beam_item_id` and `group_id` reach the reward functions
    next to the dataset columns, and the default rewards are the rule reward plus ReRe's ranking reward. The sampling
    is passed to TRL as its `rollout_func`; the loss, the KL term, reference-model sync, PEFT, DeepSpeed, logging and
    checkpointing are GRPOTrainer's, and so are the constructor's parameters, with `catalog` added.

    Datasets need a `prompt` column (text ending in `args.prompt_suffix`) and a `target` column (the target item as
    the catalog names it: its title, or its SID string with `item_format="sid"`).

    Example:
    ```python
    >>> from trl_rere import ReReConfig, ReReTrainer
    >>> from trl_rere.data import synthetic_catalog_dataset
    >>> from trl_rere.testing import tiny_causal_lm, train_tokenizer
    >>> catalog, dataset = synthetic_catalog_dataset(num_items=16, num_users=8)
    >>> tokenizer = train_tokenizer(list(catalog.titles) + list(dataset["prompt"]))
    >>> tiny_causal_lm(tokenizer).save_pretrained("tiny-model")  # with beta > 0 the reference loads from a path
    >>> args = ReReConfig(output_dir="rere-tiny", num_generations=4, per_device_train_batch_size=8, max_steps=1,
    ...                   report_to=[], use_cpu=True)
    >>> trainer = ReReTrainer(model="tiny-model", args=args, train_dataset=dataset, processing_class=tokenizer,
    ...                       catalog=catalog)  # reward_funcs=None: ReRe's rule + ranking reward
    >>> trainer.train().global_step  # prints the step's loss, rewards and rere/* group statistics
    {...}
    1
    ```
    """

    _tag_names = ["trl", "grpo", "rere"]
    _name = "ReRe"

    def __init__(
        self,
        model: str | PreTrainedModel | PeftModel,
        reward_funcs: RewardFunc | list[RewardFunc] | None = None,
        args: ReReConfig | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset | IterableDataset | dict[str, Dataset | IterableDataset] | None = None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        reward_processing_classes: PreTrainedTokenizerBase | list[PreTrainedTokenizerBase] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        quantization_config: BitsAndBytesConfig | None = None,
        peft_config: PeftConfig | None = None,
        tools: list[Callable] | None = None,
        rollout_func: RolloutFunc | None = None,
        environment_factory: EnvironmentFactory | dict[str, EnvironmentFactory] | None = None,
        *,
        catalog: ItemCatalog | str | os.PathLike | Sequence[str] | None = None,
    ):
        if catalog is None:
            raise ValueError("ReReTrainer needs the item `catalog` (ItemCatalog, info-file path or list of titles)")
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = ReReConfig(f"{str(name).split('/')[-1]}-ReRe")
        elif not isinstance(args, ReReConfig):
            raise TypeError(f"args must be a ReReConfig (a GRPOConfig with ReRe's fields), got {type(args).__name__}")
        for name, value in (("tools", tools), ("rollout_func", rollout_func), ("environment_factory",
                                                                               environment_factory)):
            if value is not None:
                raise ValueError(f"ReReTrainer generates from the catalog trie itself; `{name}` is not supported")
        uses_peft = peft_config is not None or (not isinstance(model, str) and is_peft_model(model))
        if uses_peft and args.sync_ref_model:
            # With PEFT the reference is the base model (adapter disabled); TRL cannot sync it and refuses.
            logger.warning("sync_ref_model is not supported with PEFT; the reference stays the base model")
            args.sync_ref_model = False
        if args.beta != 0.0 and not uses_peft and not isinstance(model, str) and not model.config._name_or_path:
            raise ValueError(
                "with beta != 0 TRL loads the reference model from the policy's path, but this model object has none: "
                "pass a hub id or a local directory (model.save_pretrained(path)) as `model`, or use PEFT"
            )
        self.catalog = _as_catalog(catalog)
        reward_funcs = resolve_reward_funcs(reward_funcs if reward_funcs is not None else args.rewards)
        if not reward_funcs:
            raise ValueError("no reward functions: pass reward_funcs or set args.rewards (e.g. ['rule', 'ranking'])")
        with warnings.catch_warnings(), quiet_checkpointing_alias():
            # rollout_func is TRL's documented extension point for custom generation; its "experimental" notice is
            # about TRL's API, which this package pins, not something the user can act on.
            warnings.filterwarnings("ignore", message=ROLLOUT_FUNC_NOTICE)
            super().__init__(
                model=model,
                reward_funcs=reward_funcs,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                reward_processing_classes=reward_processing_classes,
                callbacks=callbacks,
                optimizers=optimizers,
                quantization_config=quantization_config,
                peft_config=peft_config,
                rollout_func=self.rollout,
            )
        self.trie = ItemTrie.from_catalog(
            self.catalog, self.tokenizer, args.completion_template, args.prompt_suffix, item_format=args.item_format
        )
        self._check_group_size()
        for split, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            self._check_targets(split, dataset)
        # what runs the constrained search: the seam for a faster path (a GPU kernel, vLLM) behind the same contract
        self.decoding_backend: DecodingBackend = HFGenerate()
        self._rows: list[dict] = []  # the batch being generated for, from training_step / prediction_step
        self._checked_prompts: set[str] = set()
        self._rounds_without_target = 0

    @property
    def tokenizer(self):
        """The text tokenizer (the processing class itself, or a processor's tokenizer)."""
        return getattr(self.processing_class, "tokenizer", self.processing_class)

    # -- construction checks ------------------------------------------------------------------------------------
    def _check_group_size(self) -> None:
        if self.args.sampling_strategy != "beam":
            return  # sampling may repeat items
        for name, g in (("num_generations", self.num_generations), ("num_generations_eval", self.num_generations_eval)):
            if g is not None and len(self.trie) < g:
                raise ValueError(
                    f"the catalog has {len(self.trie)} distinct items but {name} is {g}: a beam search cannot return "
                    f"{g} distinct items. Lower {name} or use a larger catalog."
                )

    def _check_targets(self, split: str, dataset) -> None:
        if dataset is None or not hasattr(dataset, "column_names"):
            return
        datasets = dataset.values() if isinstance(dataset, dict) else [dataset]
        for ds in datasets:
            names = ds.column_names
            if names is None:  # an IterableDataset without known features: checked batch by batch instead
                continue
            for column in ("prompt", "target"):
                if column not in names:
                    raise ValueError(f"{split} needs a '{column}' column (has {names})")
            for row, target in enumerate(ds["target"]):
                if target not in self.catalog:
                    raise ValueError(f"{split} row {row}: target {target!r} is not in the catalog")

    # -- the rows behind the prompts ----------------------------------------------------------------------------
    # TRL hands rollout_func the prompts only; the sampler also needs each row's target (dynamic sampling, add_gt,
    # the group metrics). Both public entry points that lead to generation see the rows first. TRL toggles
    # checkpointing around generation through transformers' deprecated aliases; that notice is TRL's to act on.
    def training_step(self, model, inputs, num_items_in_batch=None):
        self._rows = inputs
        with quiet_checkpointing_alias():
            return super().training_step(model, inputs, num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        self._rows = inputs
        with quiet_checkpointing_alias():
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    # -- scoring: each group's prompt once ------------------------------------------------------------------------
    # The one private GRPOTrainer method ReRe overrides: TRL scores every completion over prompt + completion, and a
    # ReRe prompt (a history of items) is most of each sequence and the same for all G members of a group.
    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        if (not self.args.shared_prompt_logprobs or compute_aux_loss
                or any(v is not None for v in multimodal.values())
                or input_ids.size(1) - logits_to_keep < 2):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **multimodal)
        batch_size = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):  # TRL's chunks, to keep its memory peak
            chunk = slice(start, start + batch_size)
            with self.accelerator.autocast():
                lp, ent = group_log_probs(model, input_ids[chunk], attention_mask[chunk], logits_to_keep,
                                          compute_entropy=compute_entropy)
            logps.append(lp)
            entropies.append(ent)
        return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None

    def _targets_for(self, prompts: list[str]) -> list[str]:
        rows = self._rows
        if len(rows) != len(prompts) or any(r.get("prompt") != p for r, p in zip(rows, prompts)):
            raise RuntimeError(
                "ReReTrainer.rollout got prompts that are not those of the current batch; it must be called by "
                "GRPOTrainer from training_step / prediction_step"
            )
        if any("target" not in r for r in rows):
            raise ValueError(f"every row needs a 'target' column (a row has {sorted(rows[0])})")
        return [r["target"] for r in rows]

    def encode_prompts(self, prompts: Sequence[str], rows: Sequence[dict] | None = None) -> list[list[int]]:
        """Token ids of prompts, as training and evaluation both feed them to the model.

        Each distinct prompt is checked once: it must end in the trie's prompt ending with items tokenizing after it
        as the trie has them, fit `args.max_prompt_length`, and fit the model's context with the longest item. An
        error names the prompt's row (`rows[i]`, its `user_id` when it has one).
        """
        rows = rows if rows is not None else [{"prompt": p} for p in prompts]
        new = [i for i, p in enumerate(prompts) if p not in self._checked_prompts]
        seen = [i for i, p in enumerate(prompts) if p in self._checked_prompts]
        # one tokenization per prompt: the checked call for new prompts, the plain one for those checked before
        ids: list[list[int]] = [[] for _ in prompts]
        for group, check in ((new, True), (seen, False)):
            if group:
                for i, row_ids in zip(group, tokenize_prompts(self.tokenizer, [prompts[i] for i in group], self.trie,
                                                              check=check)):
                    ids[i] = row_ids
        if new:
            context = getattr(self.model.config, "max_position_embeddings", None)
            for i in new:
                n = len(ids[i])
                if self.args.max_prompt_length is not None and n > self.args.max_prompt_length:
                    raise ValueError(
                        f"a prompt has {n} tokens, more than max_prompt_length={self.args.max_prompt_length} "
                        f"({_describe(rows[i])}); load the data with load_amazon(..., tokenizer=..., "
                        f"max_prompt_length=...) to drop the oldest history items"
                    )
                if context is not None and n + self.trie.max_length > context:
                    raise ValueError(
                        f"a prompt has {n} tokens and the longest item {self.trie.max_length} more, beyond the "
                        f"model's context of {context} positions ({_describe(rows[i])}); shorten the prompts, e.g. "
                        f"load_amazon(..., tokenizer=..., max_prompt_length={context - self.trie.max_length})"
                    )
            self._checked_prompts.update(prompts[i] for i in new)
        return ids

    # -- generation: TRL's rollout_func -------------------------------------------------------------------------
    def rollout(self, prompts: list[str], trainer: GRPOTrainer | None = None) -> dict[str, list]:
        """Draws the groups for this process's prompts (TRL's repeated layout `[p0]*G + [p1]*G + ...`).

        Returns TRL's rollout fields (`prompt_ids`, `completion_ids`, `logprobs=None`: TRL recomputes them) and, per
        completion, the fields of `BEAM_FIELDS`, which TRL forwards to the reward functions.
        """
        args: ReReConfig = self.args
        group_size = self.num_generations if self.model.training else self.num_generations_eval
        num_prompts = len(prompts) // group_size
        targets = self._targets_for(prompts)
        if any(prompts[i] != prompts[(i // group_size) * group_size] for i in range(len(prompts))):
            raise RuntimeError("expected the repeated-prompt layout [p0]*G + [p1]*G + ... from TRL's RepeatSampler")
        prompt_ids = self.encode_prompts(prompts[::group_size], self._rows[::group_size])
        target_index = [self.catalog.index(t) if t in self.catalog else -1 for t in targets[::group_size]]
        options = DecodingOptions.from_args(args, pad_token_id=self.tokenizer.pad_token_id)
        with (
            profiling_context(self, "rere.generate"),
            quiet_checkpointing_alias(),  # also when rollout runs outside training_step / prediction_step
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=checkpointing_kwargs(args),
            ) as unwrapped_model,
            summon_full_params(self),
        ):
            groups = draw_groups(unwrapped_model, prompt_ids, self.trie, options, group_size, target_index,
                                 add_gt=args.add_gt, backend=self.decoding_backend)
        offset = self.accelerator.process_index * num_prompts
        output: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "logprobs": None}
        output.update({name: [] for name in BEAM_FIELDS})
        for g, members in enumerate(groups):
            for m in members:
                output["prompt_ids"].append(prompt_ids[g])
                output["completion_ids"].append(list(m.token_ids))
                output["beam_rank"].append(m.rank)
                output["beam_score"].append(m.score)
                output["beam_title"].append(m.title)
                output["beam_item_id"].append(m.item_ids[0])
                output["group_id"].append(offset + g)
        self._log_group_metrics(groups, target_index)
        return output

    # -- metrics ------------------------------------------------------------------------------------------------
    def _log_group_metrics(self, groups, targets: list[int]) -> None:
        mode = "train" if self.model.training else "eval"
        rows = []
        for members, target in zip(groups, targets):
            real = [m for m in members if m.rank >= 0]
            ranks = [m.rank for m in real if m.title_index == target]
            finite = [m.score for m in real if math.isfinite(m.score)]
            rows.append(
                {
                    "rank": min(ranks) if ranks else None,
                    "distinct": len({m.title_index for m in real}),
                    "score_sum": sum(finite),
                    "score_count": len(finite),
                }
            )
        if self.accelerator.num_processes > 1:
            rows = gather_object(rows)
        metrics = metric_buffer(self, mode)
        in_group = sum(r["rank"] is not None for r in rows) / len(rows)
        metrics["rere/target_in_group"].append(in_group)
        metrics["rere/distinct_items_per_group"].append(sum(r["distinct"] for r in rows) / len(rows))
        count = sum(r["score_count"] for r in rows)
        metrics["rere/mean_beam_score"].append(sum(r["score_sum"] for r in rows) / max(count, 1))
        ks = list(self.args.ranking_metrics_ks or [])
        if ks:
            for name, value in ranking_metrics([r["rank"] for r in rows], ks).items():
                metrics[f"rere/{name}"].append(value)
        if mode == "train":
            self._warn_without_signal(in_group)

    def _warn_without_signal(self, in_group: float) -> None:
        self._rounds_without_target = 0 if in_group > 0 else self._rounds_without_target + 1
        if self.args.no_signal_steps and self._rounds_without_target == self.args.no_signal_steps:
            logger.warning(
                f"RL receives no signal: the target has been in none of the groups for {self._rounds_without_target} "
                f"generation rounds, so every reward is 0, the advantages are 0 and the policy gradient vanishes. "
                f"Warm-start from a stronger SFT model, widen the search (beam_width) or draw larger groups "
                f"(num_generations); add_gt=True puts the target into every group."
            )
