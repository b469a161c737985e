# Copyright 2026 The trl-rere authors. Licensed under the Apache License, Version 2.0.
"""ReRe on an Amazon category (Toys and Games by default): train with ReReTrainer, then rank the test users.

Full run (4 GPUs, the paper's settings; start from an SFT checkpoint made with examples/sft.py for best results):

    accelerate launch --config_file examples/accelerate_configs/deepspeed_zero2.yaml examples/toys.py \
        --config examples/recipes/toys.yaml --data_dir data/amazon --model_name_or_path runs/rere-sft-toys

Another category: `--category Industrial_and_Scientific`. `--data_dir` is the folder that holds info/ and the split
folders. Without `--output_dir` the run writes to runs/rere-{category} (-sid for semantic IDs); a smoke run to
runs/toys-smoke-{synthetic or category}-{item format}, so the variants below do not overwrite each other. The run
prints the settings it uses. Without `--config` the defaults are the paper's (ReReConfig: G = 16, lr 1e-5, ...;
2 epochs here), bf16 where the GPU supports it, and evaluation batches of 32 prompts on a GPU (4 on a CPU).

Smoke run (CPU, about a minute, no hub or downloads): a tiny model and tokenizer are built locally and SFT-warm-
started, the test users are ranked, ReRe trains a few steps and the test users are ranked again; the table shows
both rankings next to a random one. Without `--data_dir` and `--category` it uses a synthetic catalog; with them,
the real files (`--category` defaults to Industrial_and_Scientific there, trained on its valid split). `--smoke` sets
defaults (SMOKE_DEFAULTS: G = 4, 8 completions per device, 4 steps, ...), not overrides: any argument given wins, and
`--model_name_or_path` makes it start from that model instead of building one:

    accelerate launch examples/toys.py --smoke [--data_dir ../shared/data/amazon]

Items as semantic IDs (MiniOneRec's layout and prompts; the smoke adds the code tokens to its tokenizer):

    accelerate launch examples/toys.py --smoke --item_format sid [--data_dir ../shared/data/minionerec]

The same on 2 CPU processes under any shipped accelerate config (written for GPUs, hence the overrides; not `--cpu`,
which makes accelerate start a single process):

    accelerate launch --config_file examples/accelerate_configs/deepspeed_zero3.yaml --num_processes 2 \
        --mixed_precision no examples/toys.py --smoke --data_dir ../shared/data/amazon
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import torch
from _common import (
    DEFAULT_MODEL,
    check_data_dir,
    check_model,
    check_item_vocab,
    default_eval_batch_size,
    default_output_dir,
    fail,
    load_data,
    mix_alignment_tasks,
    load_tokenizer,
    parse_args,
    script_parser,
    print_settings,
)
from accelerate import PartialState
from transformers import Trainer, TrainerCallback
from trl import ModelConfig, TrlParser, get_peft_config
from trl.models import unwrap_model_for_generation

from trl_rere import ReReConfig, ReReTrainer, get_item_format
from trl_rere.decoding import tokenize_prompts
from trl_rere.data import get_layout
from trl_rere.evaluation import DEFAULT_KS, evaluate_ranking
from trl_rere.sid_tokens import add_item_tokens

SMOKE_MAX_EVAL_SAMPLES = 100  # ~5 s per ranking on 2 idle CPU cores; the smoke ranks twice (before and after RL)
SMOKE_EVAL_BEAMS = 10
# What --smoke sets unless given (command line or --config): about a minute on a CPU.
SMOKE_DEFAULTS = {
    "model_name_or_path": None,  # None: build a tiny model and tokenizer on the run's data
    "max_steps": 4,
    "num_generations": 4,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1e-4,
    "logging_steps": 1,
    "activation_checkpointing": False,
    "bf16": False,
    "save_strategy": "no",
    "no_signal_steps": 2,  # the smoke's few steps must be able to show the trainer's warning when no group holds the target
    "eval_num_beams": SMOKE_EVAL_BEAMS,
    "max_eval_samples": SMOKE_MAX_EVAL_SAMPLES,
    "eval_before_train": True,
}
# Defaults of a run without --config or --smoke: the model the paper fine-tunes, and its 2 epochs (TRL's: 3).
RUN_DEFAULTS = {"model_name_or_path": DEFAULT_MODEL, "num_train_epochs": 2}


@dataclass
class ScriptArguments:
    data_dir: str | None = field(
        default=None,
        metadata={"help": "Folder that holds info/{category}_5_*.txt and {split}/{category}_5_*.csv (default: data; "
                  "with --smoke and neither --data_dir nor --category: a synthetic catalog)."},
    )
    category: str | None = field(
        default=None,
        metadata={"help": "Amazon category key, e.g. Toys_and_Games (default) or Industrial_and_Scientific "
                  "(the default of a smoke run on real data)."},
    )
    category_name: str | None = field(
        default=None,
        metadata={"help": "What the title prompt calls the items ('The user has palyed the following {category_name}s before: ...'); needed for a category other than the Amazon ones the prompts know, e.g. 'book' for --category Books."},
    )
    train_split: str | None = field(
        default=None, metadata={"help": "Training split (default train; valid with --smoke)."}
    )
    eval_split: str = field(default="test", metadata={"help": "Split ranked at the end."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": f"Rank only the first N evaluation rows (default: all; {SMOKE_MAX_EVAL_SAMPLES} with "
                  f"--smoke; 0 for all)."},
    )
    eval_num_beams: int = field(default=50, metadata={"help": f"Beams for the ranking (the paper: 50; the smoke: "
                                                              f"{SMOKE_EVAL_BEAMS}). HR@K is reported for K up to it."})
    eval_batch_size: int | None = field(
        default=None, metadata={"help": "Prompts per beam search during evaluation (default: 32 on a GPU, 4 on a CPU)."}
    )
    eval_before_train: bool | None = field(
        default=None,
        metadata={"help": "Also rank the test users with the starting (SFT) model, to show what RL changed "
                  "(default: on with --smoke; it doubles the evaluation time)."},
    )
    predictions_file: str | None = field(default=None, metadata={"help": "Write ranked predictions per user (JSONL)."})
    align_tasks: list[str] = field(
        default_factory=list,
        metadata={"help": "MiniOneRec's RL alignment tasks mixed into the training rows (with --item_format sid and "
                  "--data_dir): title2sid, description2sid, title_history2sid."},
    )
    smoke: bool = field(
        default=False,
        metadata={"help": "Check the whole pipeline in about a minute on a CPU: a tiny local model (unless "
                  "--model_name_or_path is given) and small settings; every argument given overrides them."},
    )
    smoke_sft_steps: int = field(
        default=300,
        metadata={"help": "SFT warm-start steps of the smoke run (0: none). Enough for the tiny model to rank the "
                  "synthetic targets among its beams, so that RL gets a signal."},
    )


# -- data ---------------------------------------------------------------------------------------------------------
def load_run_data(script_args: ScriptArguments, item_format: str):
    """(catalog, train, test, description). Synthetic data only for a smoke run that names no data at all: a given
    `--data_dir` or `--category` that does not resolve stops the run."""
    if script_args.smoke and script_args.data_dir is None and script_args.category is None:
        catalog, dataset = get_layout(item_format).synthetic(num_items=48, num_users=160, seed=0)
        splits = dataset.train_test_split(test_size=0.2, seed=0)
        train, test = splits["train"], splits["test"]
        source = f"synthetic {item_format} catalog (no --data_dir / --category given)"
    else:
        data_dir = script_args.data_dir or "data"
        category = script_args.category or ("Industrial_and_Scientific" if script_args.smoke else "Toys_and_Games")
        train_split = script_args.train_split or ("valid" if script_args.smoke else "train")
        catalog, splits = load_data(data_dir, category, (train_split, script_args.eval_split), item_format,
                                    {train_split: "--train_split", script_args.eval_split: "--eval_split"},
                                    script_args.category_name)
        train, test = splits[train_split], splits[script_args.eval_split]
        source = f"{category} from {data_dir} (train: {train_split}, eval: {script_args.eval_split})"
    total_train, total_test = len(train), len(test)
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    if script_args.max_eval_samples:
        test = test.select(range(min(script_args.max_eval_samples, len(test))))
    description = (
        f"data: {source}; catalog {len(catalog):,} items; training on {len(train):,} of {total_train:,} rows; "
        f"ranking {len(test):,} of {total_test:,} users"
    )
    return catalog, train, test, description


# -- smoke --------------------------------------------------------------------------------------------------------
def sft_tiny_model(model, tokenizer, train, item_format, steps: int) -> float:
    """BIGRec-style SFT warm start (prompt -> completion + EOS, loss on the completion only); returns the last loss.

    A plain loop rather than TRL's SFTTrainer: under a multi-process launch only the main process builds the smoke
    model while the others wait, and a Trainer there would start collectives (DDP, DeepSpeed, its own barriers) that
    the waiting processes never join. Completions are tokenized after the prompt's fixed ending, as the trie does.
    """
    from trl_rere.trie import tokenize_completions

    prompts = tokenize_prompts(tokenizer, list(train["prompt"]), check=False)  # as the trainer tokenizes them
    completions = tokenize_completions([item_format.render(t) for t in train["target"]], tokenizer,
                                       item_format.prompt_suffix)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        rows = torch.randint(len(prompts), (8,), generator=generator).tolist()
        seqs = [(prompts[i], completions[i] + [tokenizer.eos_token_id]) for i in rows]
        width = max(len(p) + len(c) for p, c in seqs)
        ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
        labels = torch.full((len(seqs), width), -100)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for k, (p, c) in enumerate(seqs):
            ids[k, : len(p) + len(c)] = torch.tensor(p + c)
            labels[k, len(p) : len(p) + len(c)] = torch.tensor(c)
            mask[k, : len(p) + len(c)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return loss.item()


def build_smoke_model(catalog, train, training_args: ReReConfig, sft_steps: int) -> str:
    """A tiny Qwen2-style model and a tokenizer trained on this data, SFT-warm-started; returns its folder.

    Only the main process builds it; the others wait at a barrier and then load the saved folder.
    """
    from trl_rere.testing import tiny_causal_lm, train_tokenizer

    path = os.path.join(training_args.output_dir, "smoke-model")
    state = PartialState()
    if state.is_main_process:
        tokenizer = train_tokenizer(list(catalog.titles) + list(train["prompt"]), kind="bpe", vocab_size=1024)
        # before the model: from scratch, every code (semantic IDs) gets its own embedding
        add_item_tokens(tokenizer, catalog, training_args.item_format)
        model = tiny_causal_lm(tokenizer, hidden_size=64, num_layers=2, num_heads=2, seed=0)
        if sft_steps > 0:
            item_format = get_item_format(
                training_args.item_format, training_args.completion_template, training_args.prompt_suffix
            )
            loss = sft_tiny_model(model, tokenizer, train, item_format, sft_steps)
            print(f"smoke: SFT warm start, {sft_steps} steps, last loss {loss:.3f}", flush=True)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    state.wait_for_everyone()
    return path


# -- evaluation ---------------------------------------------------------------------------------------------------
def random_ranking_metrics(num_items: int, ks) -> dict[str, float]:
    """Expected HR@K / NDCG@K of a uniformly random ranking of `num_items` items: the scale for a tiny model."""
    metrics = {}
    for k in ks:
        metrics[f"HR@{k}"] = min(k, num_items) / num_items
        metrics[f"NDCG@{k}"] = sum(1.0 / math.log2(r + 2) for r in range(min(k, num_items))) / num_items
    return metrics


def rank_test_users(trainer: ReReTrainer, tokenizer, test, script_args: ScriptArguments, predictions_file=None):
    """`evaluate_ranking` on the trainer's model, on all processes (sharded), with ZeRO-3 weights gathered."""
    with unwrap_model_for_generation(
        trainer.model_wrapped, trainer.accelerator, gather_deepspeed3_params=trainer.args.ds3_gather_for_generation
    ) as model:
        return evaluate_ranking(
            model,
            tokenizer,
            test,
            trainer.trie,
            num_beams=script_args.eval_num_beams,
            ks=[k for k in DEFAULT_KS if k <= script_args.eval_num_beams],
            batch_size=script_args.eval_batch_size or default_eval_batch_size(),
            predictions_file=predictions_file,
            accelerator=trainer.accelerator,
        )


def log_ranking(trainer: ReReTrainer, metrics: dict[str, float]) -> None:
    """Sends HR@K / NDCG@K to the trainer's loggers (tensorboard, wandb, ...) as `test/HR@K` at the current step.

    Through the base `transformers.Trainer.log`: TRL's `GRPOTrainer.log` would flush its running training averages.
    After `train()` the tensorboard callback has closed its writer; its `on_log` opens a new one in the same folder.
    """
    Trainer.log(trainer, {f"test_{k}": v for k, v in metrics.items() if k.startswith(("HR@", "NDCG@"))})


class RankBeforeTraining(TrainerCallback):
    """Ranks the test users with the starting model when training begins, so the run can show what RL changed.

    `on_train_begin` comes after the Trainer has wrapped the model (DDP, DeepSpeed engine), so the same gathering as
    after training applies; every process calls it, as the sharded evaluation requires.
    """

    def __init__(self, tokenizer, test, script_args: ScriptArguments):
        self.tokenizer = tokenizer
        self.test = test
        self.script_args = script_args
        self.trainer: ReReTrainer | None = None
        self.metrics: dict[str, float] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer is None or self.metrics is not None:
            return
        self.metrics = rank_test_users(self.trainer, self.tokenizer, self.test, self.script_args)
        log_ranking(self.trainer, self.metrics)


def comparison_table(columns: dict[str, dict[str, float]], title: str) -> str:
    """One markdown table: a row per metric (HR@K, NDCG@K), a column per ranking (before RL, after RL, random)."""
    first = next(iter(columns.values()))
    ks = sorted({int(key.split("@")[1]) for key in first if key.startswith("HR@")})
    lines = [f"### {title}", "", "| metric | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name in ("HR", "NDCG"):
        for k in ks:
            cells = " | ".join(f"{metrics[f'{name}@{k}']:.4f}" for metrics in columns.values())
            lines.append(f"| {name}@{k} | {cells} |")
    return "\n".join(lines)


def rl_signal_summary(log_history: list[dict]) -> str:
    steps = [h for h in log_history if "reward_std" in h]
    rewarded = sum(1 for h in steps if h.get("reward_std", 0.0) > 0.0)
    return f"RL signal: {rewarded} of {len(steps)} logged steps had rewards that differ within a group"


# -- main ---------------------------------------------------------------------------------------------------------
def run_name(script_args: ScriptArguments, item_format: str) -> str:
    """The default output folder's name: one per data and item format, so that runs do not overwrite each other."""
    if script_args.smoke:
        source = "synthetic" if script_args.data_dir is None and script_args.category is None else (
            script_args.category or "Industrial_and_Scientific")
        return f"toys-smoke-{source}-{item_format}"
    return f"rere-{script_args.category or 'Toys_and_Games'}" + ("" if item_format == "title" else f"-{item_format}")


def main(script_args: ScriptArguments, training_args: ReReConfig, model_args: ModelConfig,
         preset_keys: frozenset = frozenset()) -> dict:
    if script_args.max_eval_samples is not None and script_args.max_eval_samples < 0:
        fail(f"--max_eval_samples must be >= 0 (0: all users), got {script_args.max_eval_samples}")
    smoke = script_args.smoke
    model_name = model_args.model_name_or_path or (None if smoke else DEFAULT_MODEL)
    fmt = training_args.item_format
    if not smoke:
        # Cheap checks first, so a typo or a missing download costs seconds, not a data load.
        train_split = script_args.train_split or "train"
        check_data_dir(script_args.data_dir or "data", script_args.category or "Toys_and_Games",
                       (train_split, script_args.eval_split), fmt,
                       {train_split: "--train_split", script_args.eval_split: "--eval_split"})
    if model_name:
        check_model(model_name)
    if script_args.max_eval_samples == 0:
        script_args.max_eval_samples = None
    default_output_dir(training_args, run_name(script_args, fmt))
    catalog, train, test, description = load_run_data(script_args, fmt)
    if script_args.align_tasks:
        category = script_args.category or ("Industrial_and_Scientific" if smoke else "Toys_and_Games")
        train = mix_alignment_tasks("rl", train, script_args.align_tasks, catalog, script_args.data_dir, category,
                                    fmt, training_args.seed)
    state = PartialState()
    if state.is_main_process:
        print(description, flush=True)
        length = ({"max_steps": training_args.max_steps} if training_args.max_steps > 0
                  else {"num_train_epochs": f"{training_args.num_train_epochs:g}"})
        print_settings({
            "model": model_name or "tiny (built by --smoke)", "item_format": fmt,
            "num_generations": training_args.num_generations,
            "per_device_train_batch_size": training_args.per_device_train_batch_size,
            "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
            "learning_rate": training_args.learning_rate, **length,
            "bf16": training_args.bf16, "eval_num_beams": script_args.eval_num_beams,
            "eval_batch_size": script_args.eval_batch_size or default_eval_batch_size(),
            "max_eval_samples": script_args.max_eval_samples or "all", "output_dir": training_args.output_dir,
        }, preset_keys)
        if smoke and script_args.max_eval_samples == SMOKE_MAX_EVAL_SAMPLES:
            print(f"smoke: ranking at most {SMOKE_MAX_EVAL_SAMPLES} users with {script_args.eval_num_beams} beams "
                  f"(--max_eval_samples N to change, 0 for all)", flush=True)
    if model_name is None:
        model_name = build_smoke_model(catalog, train, training_args, script_args.smoke_sft_steps)

    tokenizer = load_tokenizer(model_name, padding_side="left")
    flags = f"--data_dir {script_args.data_dir or 'data'} --category {script_args.category or 'Toys_and_Games'}"
    check_item_vocab(tokenizer, catalog, fmt, model_name, flags)
    eval_before = script_args.eval_before_train if script_args.eval_before_train is not None else smoke
    before = RankBeforeTraining(tokenizer, test, script_args) if eval_before else None
    trainer = ReReTrainer(
        model=model_name,
        args=training_args,
        train_dataset=train,
        catalog=catalog,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[before] if before else None,
    )
    if before:
        before.trainer = trainer
    trainer.train()
    trainer.save_model(training_args.output_dir)

    metrics = rank_test_users(trainer, tokenizer, test, script_args, predictions_file=script_args.predictions_file)
    log_ranking(trainer, metrics)
    if trainer.accelerator.is_main_process:
        columns = {}
        if before and before.metrics is not None:
            columns["before RL"] = before.metrics
        columns["after RL"] = metrics
        ks = sorted({int(key.split("@")[1]) for key in metrics if key.startswith("HR@")})
        columns["random ranking"] = random_ranking_metrics(len(catalog), ks)
        print(comparison_table(columns, f"Ranking on {script_args.eval_split} ({len(test)} users, "
                                        f"{len(catalog):,} items)"))
        print(rl_signal_summary(trainer.state.log_history))
        report = dict(metrics)
        report["before_rl"] = columns.get("before RL")
        report["random_ranking"] = columns["random ranking"]
        report["data"] = description
        with open(os.path.join(training_args.output_dir, "ranking_metrics.json"), "w") as f:
            json.dump(report, f, indent=2)
    trainer.save_state()
    trainer.accelerator.wait_for_everyone()
    return metrics


def make_parser() -> TrlParser:
    return script_parser((ScriptArguments, ReReConfig, ModelConfig), RUN_DEFAULTS)


if __name__ == "__main__":
    (args, preset_keys) = parse_args(make_parser(), presets={"smoke": SMOKE_DEFAULTS})
    main(*args, preset_keys=preset_keys)
