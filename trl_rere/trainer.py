"""`ReReTrainer`: TRL's GRPOTrainer whose groups are drawn from the catalog trie and whose rewards know beam ranks."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from accelerate.logging import get_logger
from accelerate.utils import is_peft_model
from trl import GRPOTrainer
from trl.extras.profiling import profiling_context
from trl.models import unwrap_model_for_generation

from .catalog import ItemCatalog
from .config import ReReConfig
from .constrained import generate_beams, left_pad, tokenize_prompts
from .rewards import resolve_reward_funcs
from .sampling import beam_groups, insert_ground_truth, sample_from_trie, sample_groups
from .trie import ItemTrie


logger = get_logger(__name__)

def _as_catalog(catalog) -> ItemCatalog:
    if isinstance(catalog, ItemCatalog):
        return catalog
    if isinstance(catalog, (str, os.PathLike)):
        return ItemCatalog.from_info_file(catalog)
    if isinstance(catalog, Sequence):
        return ItemCatalog.from_titles(catalog)
    raise TypeError(f"catalog must be an ItemCatalog, a path to an info file or a list of titles, got {type(catalog)}")


class ReReTrainer(GRPOTrainer):
    """GRPO for generative recommendation with ReRe's sampling and rewards.

    Only generation and the reward inputs differ from [`trl.GRPOTrainer`]: for each unique prompt one constrained
    beam search of `num_generations` (G) beams over the catalog's title trie gives G distinct real items ranked by
    the model's log-probability (or, for the ablations, trie-constrained sampling); each completion's `beam_rank`,
    `beam_score`, `beam_title`, `beam_item_id` and `group_id` are passed to the reward functions next to the dataset
    columns. Loss, KL, reference-model sync, PEFT, DeepSpeed, logging and checkpointing are TRL's.

    Datasets need a `prompt` column (text ending in `args.prompt_suffix`) and a `target` column (the target title).

    Example:
    ```python
    >>> from trl_rere import ReReConfig, ReReTrainer
    >>> trainer = ReReTrainer(
    ...     model="Qwen/Qwen2-0.5B",
    ...     args=ReReConfig(output_dir="rere-toys", per_device_train_batch_size=64),
    ...     train_dataset=dataset,  # columns: prompt, target
    ...     catalog="data/info/Toys_and_Games_5_2016-10-2018-11.txt",
    ... )  # reward_funcs=None: ReRe's rule + ranking reward
    >>> trainer.train()
    ```
    """

    _tag_names = ["trl", "grpo", "rere"]
    _name = "ReRe"

    def __init__(
        self,
        model,
        args: ReReConfig | None = None,
        train_dataset=None,
        catalog: ItemCatalog | str | os.PathLike | Sequence[str] | None = None,
        reward_funcs=None,
        eval_dataset=None,
        processing_class=None,
        reward_processing_classes=None,
        callbacks=None,
        optimizers=(None, None),
        peft_config=None,
        **kwargs,
    ):
        if catalog is None:
            raise ValueError("ReReTrainer needs the item `catalog` (ItemCatalog, info-file path or list of titles)")
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = ReReConfig(f"{str(name).split('/')[-1]}-ReRe")
        elif not isinstance(args, ReReConfig):
            raise TypeError(f"args must be a ReReConfig (a GRPOConfig with ReRe's fields), got {type(args).__name__}")
        for unsupported in ("rollout_func", "tools", "environment_factory"):
            if kwargs.get(unsupported) is not None:
                raise ValueError(f"ReReTrainer generates from the catalog trie itself; `{unsupported}` is not supported")
        if args.use_vllm:
            raise NotImplementedError(
                "ReReTrainer does not support use_vllm yet: its beam search runs through transformers' generate(). "
                "Set use_vllm=False."
            )
        if args.use_transformers_continuous_batching:
            raise NotImplementedError(
                "ReReTrainer does not support use_transformers_continuous_batching: continuous batching cannot run "
                "a constrained beam search. Set use_transformers_continuous_batching=False."
            )
        self._check_whole_groups(args, eval_dataset is not None)
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
            peft_config=peft_config,
        )
        self.trie = ItemTrie.from_catalog(
            self.catalog, self._tokenizer, args.completion_template, args.prompt_suffix
        )
        for split, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            self._check_targets(split, dataset)
        self._rere_targets: list[str] = []
        self._rere_fields: dict[str, list] = {}

    # -- construction checks ------------------------------------------------------------------------------------
    @staticmethod
    def _check_whole_groups(args: ReReConfig, has_eval: bool) -> None:
        # One beam search per prompt needs all G completions of a prompt on the same process.
        per_process = args.per_device_train_batch_size * args.steps_per_generation
        if per_process % args.num_generations != 0:
            raise ValueError(
                f"ReReTrainer runs one beam search per prompt, so each process must hold whole groups: "
                f"per_device_train_batch_size ({args.per_device_train_batch_size}) x steps_per_generation "
                f"({args.steps_per_generation}) = {per_process} must be a multiple of num_generations "
                f"({args.num_generations}). Change per_device_train_batch_size, gradient_accumulation_steps / "
                f"steps_per_generation, or num_generations."
            )
        g_eval = args.num_generations_eval or args.num_generations
        if has_eval and args.per_device_eval_batch_size % g_eval != 0:
            raise ValueError(
                f"per_device_eval_batch_size ({args.per_device_eval_batch_size}) must be a multiple of the eval "
                f"group size ({g_eval}) so each process holds whole groups"
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
                    raise ValueError(f"{split} row {row}: target {target!r} is not a catalog title")

    # -- generation ---------------------------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        # The sampler needs the targets (dynamic sampling, add_gt, metrics); TRL only hands it token ids.
        self._rere_targets = [x["target"] for x in inputs]
        group_size = self.num_generations if self.model.training else self.num_generations_eval
        unique_prompts = [x["prompt"] for x in inputs[::group_size]]
        if isinstance(unique_prompts[0], str):
            # Titles must tokenize after these prompts exactly as the trie has them, or beams would be off-catalog.
            tokenize_prompts(self._tokenizer, unique_prompts, self.trie)
        return super()._generate_and_score_completions(inputs)

    def _generate(self, prompts):
        outputs = super()._generate(prompts)
        # TRL merges this dict row-wise into the inputs and passes it to every reward function.
        outputs[5].update(self._rere_fields)
        return outputs

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        args: ReReConfig = self.args
        group_size = num_generations
        num_prompts = len(prompt_ids) // group_size
        unique = [prompt_ids[i * group_size] for i in range(num_prompts)]
        if any(prompt_ids[i] != unique[i // group_size] for i in range(len(prompt_ids))):
            raise RuntimeError("expected the repeated-prompt layout [p0]*G + [p1]*G + ... from TRL's RepeatSampler")
        targets = [self.catalog.index(t) if t in self.catalog else -1 for t in self._rere_targets[::group_size]]
        pad_id = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else self.trie.eos_token_id
        input_ids, attention_mask = left_pad(unique, pad_id, self.accelerator.device)

        with (
            profiling_context(self, "rere.generate"),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            # TRL leaves dropout on during generation; beams must be ranked by the deterministic policy.
            was_training = unwrapped_model.training
            unwrapped_model.eval()
            try:
                if args.sampling_strategy == "beam":
                    width = max(args.beam_width or group_size, group_size)
                    completion_ids, scores = generate_beams(
                        unwrapped_model, input_ids, attention_mask, self.trie, num_beams=width, pad_token_id=pad_id
                    )
                else:
                    draws = group_size
                    if args.sampling_strategy == "dynamic":
                        draws = math.ceil(args.dynamic_sampling_factor * group_size)
                    completion_ids, scores = sample_from_trie(
                        unwrapped_model,
                        input_ids,
                        attention_mask,
                        self.trie,
                        num_samples=draws,
                        pad_token_id=pad_id,
                        temperature=args.temperature,
                        top_p=args.top_p,
                        top_k=args.top_k,
                    )
            finally:
                unwrapped_model.train(was_training)

        if args.sampling_strategy == "beam":
            groups = beam_groups(self.trie, completion_ids, scores, num_prompts, group_size)
        else:
            groups = sample_groups(
                self.trie, completion_ids, scores, num_prompts, group_size, args.sampling_strategy == "dynamic", targets
            )
        if args.add_gt:
            insert_ground_truth(groups, self.trie, targets)

        offset = self.accelerator.process_index * num_prompts
        fields = {"beam_rank": [], "beam_score": [], "beam_title": [], "beam_item_id": [], "group_id": []}
        completion_ids_list = []
        for g, members in enumerate(groups):
            for m in members:
                title = self.trie.title(m.title_index)
                completion_ids_list.append(list(m.token_ids))
                fields["beam_rank"].append(m.rank)
                fields["beam_score"].append(m.score)
                fields["beam_title"].append(title)
                fields["beam_item_id"].append(self.catalog.item_ids(title)[0])
                fields["group_id"].append(offset + g)
        self._rere_fields = fields
        self._log_group_metrics(groups, targets, completion_ids_list)
        return completion_ids_list, None

    # -- metrics ------------------------------------------------------------------------------------------------
    def _log_group_metrics(self, groups, targets, completion_ids_list) -> None:
        mode = "train" if self.model.training else "eval"
        ks = list(self.args.ranking_metrics_ks or [])
        rows = []
        for members, target in zip(groups, targets):
            real = [m for m in members if m.rank >= 0]
            ranks = [m.rank for m in real if m.title_index == target]
            rank = min(ranks) if ranks else math.inf
            finite = [m.score for m in real if math.isfinite(m.score)]
            rows.append(
                [
                    float(bool(ranks)),
                    float(len({m.title_index for m in real})),
                    sum(finite) / len(finite) if finite else 0.0,
                    float(len(finite)),
                ]
                + [float(rank < k) for k in ks]
                + [1.0 / math.log2(rank + 2) if rank < k else 0.0 for k in ks]
            )
        # Honest validity check: every completion handed to TRL must decode to a catalog title.
        invalid = sum(self.trie.lookup(ids) < 0 for ids in completion_ids_list)
        stats = torch.tensor(rows, dtype=torch.float64, device=self.accelerator.device)
        totals = torch.tensor([float(invalid), float(len(completion_ids_list))], device=self.accelerator.device)
        stats = self.accelerator.gather(stats).cpu()
        totals = self.accelerator.gather(totals.unsqueeze(0)).sum(0).cpu()
        metrics = self._metrics[mode]
        metrics["rere/target_in_group"].append(stats[:, 0].mean().item())
        metrics["rere/distinct_items_per_group"].append(stats[:, 1].mean().item())
        weights = stats[:, 3]
        metrics["rere/mean_beam_score"].append(((stats[:, 2] * weights).sum() / weights.sum().clamp(min=1)).item())
        metrics["rere/invalid_item_rate"].append((totals[0] / totals[1].clamp(min=1)).item())
        for j, k in enumerate(ks):
            metrics[f"rere/HR@{k}"].append(stats[:, 4 + j].mean().item())
            metrics[f"rere/NDCG@{k}"].append(stats[:, 4 + len(ks) + j].mean().item())
