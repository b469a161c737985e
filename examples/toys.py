# Copyright 2026 The trl-rere authors. Licensed under the Apache License, Version 2.0.
"""ReRe on an Amazon category (Toys and Games by default): train with ReReTrainer, then rank the test users.

Full run (GPUs, the paper's settings; start from an SFT checkpoint made with examples/sft.py for best results):

    accelerate launch --config_file examples/accelerate_configs/deepspeed_zero2.yaml examples/toys.py \
        --config examples/recipes/toys.yaml --data_dir data --model_name_or_path rere-sft-toys

Another category: `--category Industrial_and_Scientific --data_dir data`.

Smoke run (CPU, a few minutes, no hub or downloads: a tiny model is built locally, optionally warm-started with SFT,
trained with ReRe for a few steps and evaluated; on the Industrial files when given `--data_dir`, on a synthetic
catalog otherwise):

    accelerate launch examples/toys.py --smoke [--data_dir ../shared/data]
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

from transformers import AutoConfig, AutoTokenizer
from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser, get_peft_config
from trl.models import unwrap_model_for_generation

from trl_rere import ReReConfig, ReReTrainer
from trl_rere.data import load_amazon, sft_dataset, synthetic_catalog_dataset
from trl_rere.evaluation import DEFAULT_KS, evaluate_ranking, format_metrics_table


@dataclass
class ScriptArguments:
    data_dir: str = field(
        default="data",
        metadata={"help": "Folder with the D3/ReRe files: info/{category}_5_*.txt and {split}/{category}_5_*.csv."},
    )
    category: str | None = field(
        default=None,
        metadata={"help": "Amazon category key, e.g. Toys_and_Games (default) or Industrial_and_Scientific "
                  "(the default with --smoke and --data_dir)."},
    )
    train_split: str | None = field(default=None, metadata={"help": "Training split (default train; valid with --smoke)."})
    eval_split: str = field(default="test", metadata={"help": "Split ranked at the end."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Rank only the first N evaluation rows."})
    eval_num_beams: int = field(default=50, metadata={"help": "Beams for the final ranking (the paper: 50)."})
    eval_batch_size: int = field(default=4, metadata={"help": "Prompts per beam search during evaluation."})
    predictions_file: str | None = field(default=None, metadata={"help": "Write ranked predictions per user (JSONL)."})
    smoke: bool = field(default=False, metadata={"help": "Tiny local model, few steps: checks the whole pipeline."})
    smoke_sft_steps: int = field(default=40, metadata={"help": "SFT warm-start steps of the smoke run (0: none)."})


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def load_data(script_args: ScriptArguments):
    """(catalog, train, eval) from the data folder or, for a smoke run without one, the synthetic catalog."""
    if script_args.smoke and not os.path.isdir(script_args.data_dir):
        catalog, dataset = synthetic_catalog_dataset(num_items=48, num_users=160, seed=0)
        splits = dataset.train_test_split(test_size=0.2, seed=0)
        train, test = splits["train"], splits["test"]
    else:
        category = script_args.category or ("Industrial_and_Scientific" if script_args.smoke else "Toys_and_Games")
        train_split = script_args.train_split or ("valid" if script_args.smoke else "train")
        try:
            catalog, splits = load_amazon(script_args.data_dir, category, splits=(train_split, script_args.eval_split))
        except FileNotFoundError as error:
            fail(str(error))
        train, test = splits[train_split], splits[script_args.eval_split]
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    if script_args.max_eval_samples:
        test = test.select(range(min(script_args.max_eval_samples, len(test))))
    return catalog, train, test


def check_model(name: str) -> None:
    """Stops at once, saying what to do, when the model is neither a local folder nor reachable on the hub."""
    try:
        AutoConfig.from_pretrained(name)
    except OSError as error:
        fail(
            f"cannot load the model {name!r} ({str(error).splitlines()[0]}). Without hub access, download it on a "
            f"machine that has it (`hf download {name} --local-dir {name.split('/')[-1]}`), copy the folder here and "
            f"pass --model_name_or_path {name.split('/')[-1]}; or try the pipeline with --smoke."
        )


def build_smoke_model(catalog, train, output_dir: str, sft_steps: int) -> str:
    """A tiny Qwen2-style model and a tokenizer trained on this data, optionally SFT-warm-started; returns its path."""
    from trl_rere.testing import tiny_causal_lm, train_tokenizer

    path = os.path.join(output_dir, "smoke-model")
    tokenizer = train_tokenizer(list(catalog.titles) + list(train["prompt"]), kind="bpe", vocab_size=1024)
    model = tiny_causal_lm(tokenizer, hidden_size=64, num_layers=2, num_heads=2, seed=0)
    if sft_steps > 0:
        sft_args = SFTConfig(
            output_dir=os.path.join(output_dir, "smoke-sft"),
            max_steps=sft_steps,
            per_device_train_batch_size=8,
            learning_rate=3e-3,
            lr_scheduler_type="constant",
            logging_steps=10,
            save_strategy="no",
            report_to=[],
            bf16=False,
            gradient_checkpointing=False,
            use_cpu=True,
        )
        trainer = SFTTrainer(model=model, args=sft_args, train_dataset=sft_dataset(train), processing_class=tokenizer)
        trainer.train()
        model = trainer.model
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def smoke_overrides(training_args: ReReConfig) -> None:
    """Settings that make the smoke run take minutes on a CPU."""
    training_args.max_steps = 4
    training_args.num_generations = 4
    training_args.per_device_train_batch_size = 8
    training_args.gradient_accumulation_steps = 1
    training_args.steps_per_generation = 1
    training_args.generation_batch_size = training_args.per_device_train_batch_size * training_args.world_size
    training_args.learning_rate = 1e-4
    training_args.logging_steps = 1
    training_args.gradient_checkpointing = False
    training_args.bf16 = False
    training_args.save_strategy = "no"
    training_args.report_to = []


def main(script_args: ScriptArguments, training_args: ReReConfig, model_args: ModelConfig) -> dict:
    catalog, train, test = load_data(script_args)
    model_name = model_args.model_name_or_path or "Qwen/Qwen2-0.5B"
    if script_args.smoke:
        smoke_overrides(training_args)
        # Every process builds the same model from the same seed; the main process writes it first.
        from accelerate import PartialState

        state = PartialState()
        with state.main_process_first():
            if state.is_main_process:
                model_name = build_smoke_model(catalog, train, training_args.output_dir, script_args.smoke_sft_steps)
        model_name = os.path.join(training_args.output_dir, "smoke-model")
        script_args.eval_num_beams = min(script_args.eval_num_beams, 10)
    else:
        check_model(model_name)

    tokenizer = AutoTokenizer.from_pretrained(model_name, padding_side="left")
    trainer = ReReTrainer(
        model=model_name,
        args=training_args,
        train_dataset=train,
        catalog=catalog,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    trainer.train()
    trainer.save_model(training_args.output_dir)

    with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as model:
        metrics = evaluate_ranking(
            model,
            tokenizer,
            test,
            trainer.trie,
            num_beams=script_args.eval_num_beams,
            ks=[k for k in DEFAULT_KS if k <= script_args.eval_num_beams],
            batch_size=script_args.eval_batch_size,
            predictions_file=script_args.predictions_file,
            accelerator=trainer.accelerator,
        )
    if trainer.accelerator.is_main_process:
        print(format_metrics_table(metrics, title=f"Ranking on {script_args.eval_split} ({len(test)} users)"))
        with open(os.path.join(training_args.output_dir, "ranking_metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    trainer.accelerator.wait_for_everyone()
    return metrics


if __name__ == "__main__":
    parser = TrlParser((ScriptArguments, ReReConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config()
    main(script_args, training_args, model_args)
