# Copyright 2026 The trl-rere authors. Licensed under the Apache License, Version 2.0.
"""SFT warm start for ReRe (BIGRec-style): TRL's SFTTrainer on prompt -> '"{title}"\\n' + EOS, loss on the completion.

The authors' setting (10 epochs, lr 3e-4, 128 sequences per optimizer step, the best epoch by validation loss) is
the recipe; on 4 GPUs:

    accelerate launch --config_file examples/accelerate_configs/multi_gpu.yaml examples/sft.py \
        --config examples/recipes/sft_toys.yaml --data_dir data/amazon

Without `--config` the script's own defaults are the same hyper-parameters on one process (16 x 8 = 128 per step).
On a CPU in a few minutes, with a tiny model made by `examples/make_tiny_model.py`:

    python examples/sft.py --model_name_or_path runs/tiny-model --data_dir ../shared/data/amazon \
        --category Industrial_and_Scientific --train_split valid --eval_split none --max_train_samples 512 \
        --num_train_epochs 1 --per_device_train_batch_size 8 --gradient_accumulation_steps 1

Items as semantic IDs (MiniOneRec's layout): add `--item_format sid --data_dir data/minionerec --category
Industrial_and_Scientific`; the catalog's code tokens are added to the tokenizer and the embeddings resized first.

The saved model (and its tokenizer) is the starting point of `examples/toys.py --model_name_or_path <output_dir>`.
Without `--output_dir` it goes to runs/sft-{category} (runs/sft-{category}-sid for semantic IDs). bf16 is on where
the GPU supports it and off on a CPU, unless given; a multi-process CPU launch uses gloo, as in ReReConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from _common import (
    DEFAULT_MODEL,
    check_model,
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
from transformers import AutoModelForCausalLM, EarlyStoppingCallback
from trl import ModelConfig, SFTTrainer, TrlParser, get_peft_config

from trl_rere.item_format import get_item_format
from trl_rere.sid_tokens import add_item_tokens
from trl_rere.config import ReReSFTConfig
from trl_rere.data import sft_dataset
from trl_rere.item_format import ITEM_FORMATS


@dataclass
class ScriptArguments:
    data_dir: str = field(default="data", metadata={"help": "Folder that holds info/ and the split folders."})
    category: str = field(default="Toys_and_Games", metadata={"help": "Amazon category key."})
    category_name: str | None = field(
        default=None,
        metadata={"help": "What the title prompt calls the items ('The user has palyed the following {category_name}s before: ...'); needed for a category other than the Amazon ones the prompts know, e.g. 'book' for --category Books."},
    )
    train_split: str = field(
        default="train", metadata={"help": "Split to fine-tune on (valid where the data has only valid/ and test/)."}
    )
    eval_split: str | None = field(default="valid", metadata={"help": "Split for the eval loss (none: no eval)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Fine-tune on only the first N rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Eval loss on only the first N rows."})
    item_format: str = field(
        default="title",
        metadata={"help": "How items are written: 'title' ('\"{title}\"\\n') or 'sid' (semantic-ID tokens).",
                  "choices": sorted(ITEM_FORMATS)},
    )
    completion_template: str | None = field(
        default=None, metadata={"help": "Overrides the item format's completion text; EOS is appended."}
    )
    align_tasks: list[str] = field(
        default_factory=list,
        metadata={"help": "MiniOneRec's alignment tasks mixed into the training split (with --item_format sid): "
                  "title2sid, description2sid, title_history2sid, sid2title, sid_history2title, title_history2title."},
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop after this many evaluations without a better eval loss (the authors stop early; needs "
                  "--eval_strategy, --save_strategy the same, --load_best_model_at_end true)."},
    )


# The authors' SFT (METHOD.md section 5): 10 epochs, lr 3e-4, 128 sequences per optimizer step.
PAPER_DEFAULTS = {
    "model_name_or_path": DEFAULT_MODEL,
    "learning_rate": 3e-4,
    "num_train_epochs": 10,
    "per_device_train_batch_size": 16,
    "gradient_accumulation_steps": 8,
    "logging_steps": 10,
}


def evaluation_wanted(training_args: ReReSFTConfig, eval_split: str | None) -> bool:
    return eval_split is not None and training_args.eval_strategy != "no"


def main(script_args: ScriptArguments, training_args: ReReSFTConfig, model_args: ModelConfig) -> dict:
    model_name = model_args.model_name_or_path or DEFAULT_MODEL
    for name in ("max_train_samples", "max_eval_samples"):
        if (getattr(script_args, name) or 0) < 0:
            fail(f"--{name} must be >= 0, got {getattr(script_args, name)}")
    eval_split = script_args.eval_split if script_args.eval_split and script_args.eval_split.lower() != "none" else None
    splits = tuple(dict.fromkeys(s for s in (script_args.train_split, eval_split) if s))
    if script_args.early_stopping_patience and not (training_args.load_best_model_at_end and evaluation_wanted(
            training_args, eval_split)):
        fail("--early_stopping_patience needs an eval split, --eval_strategy epoch (or steps) and "
             "--load_best_model_at_end true")
    check_model(model_name)  # seconds; the data and the model load come after
    catalog, data = load_data(script_args.data_dir, script_args.category, splits, script_args.item_format,
                              {script_args.train_split: "--train_split", eval_split: "--eval_split"},
                              script_args.category_name)
    fmt, template = script_args.item_format, script_args.completion_template
    default_output_dir(training_args, f"sft-{script_args.category}" + ("" if fmt == "title" else f"-{fmt}"))
    train = data[script_args.train_split]
    evaluation = data[eval_split] if eval_split else None
    total_train = len(train)
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    if evaluation is not None and script_args.max_eval_samples:
        evaluation = evaluation.select(range(min(script_args.max_eval_samples, len(evaluation))))
    train_rows = sft_dataset(train, template, item_format=fmt)
    if script_args.align_tasks:
        train_rows = mix_alignment_tasks("sft", train, script_args.align_tasks, catalog, script_args.data_dir,
                                         script_args.category, fmt, training_args.seed, template)
    tokenizer = load_tokenizer(model_name)
    model = model_name
    if get_item_format(fmt).code_pattern is not None:
        # every code must be one token before training: load the model here to grow its embeddings
        model = AutoModelForCausalLM.from_pretrained(model_name, **(training_args.model_init_kwargs or {}))
        added = add_item_tokens(tokenizer, catalog, fmt, model=model)
        print(f"added {len(added)} semantic-ID code tokens to the tokenizer", flush=True)
    main_process = PartialState().is_main_process
    if main_process:
        print(f"data: {script_args.category} from {script_args.data_dir} ({fmt}); catalog {len(catalog):,} items; "
              f"fine-tuning on {len(train):,} of {total_train:,} {script_args.train_split} rows; eval loss on "
              + (f"{len(evaluation):,} {eval_split} rows" if evaluation is not None else "none")
              + (" (--eval_strategy epoch to compute it)" if evaluation is not None and training_args.eval_strategy == "no"
                 else ""), flush=True)
        print_settings({
            "model": model_name, "learning_rate": training_args.learning_rate,
            "num_train_epochs": training_args.num_train_epochs, "max_steps": training_args.max_steps,
            "per_device_train_batch_size": training_args.per_device_train_batch_size,
            "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
            "bf16": training_args.bf16, "output_dir": training_args.output_dir,
        })
    trainer = SFTTrainer(
        model=model,
        processing_class=tokenizer,
        args=training_args,
        train_dataset=train_rows,
        eval_dataset=sft_dataset(evaluation, template, item_format=fmt) if evaluation is not None else None,
        peft_config=get_peft_config(model_args),
        callbacks=[EarlyStoppingCallback(script_args.early_stopping_patience)]
        if script_args.early_stopping_patience else None,
    )
    result = trainer.train()
    trainer.save_model(training_args.output_dir)  # the model and its tokenizer
    if main_process:
        print(f"saved the model and tokenizer to {training_args.output_dir} (train loss {result.training_loss:.4f}, "
              f"{trainer.state.global_step} steps); next: examples/toys.py --model_name_or_path "
              f"{training_args.output_dir}", flush=True)
    return result.metrics


def make_parser() -> TrlParser:
    return script_parser((ScriptArguments, ReReSFTConfig, ModelConfig), PAPER_DEFAULTS)


if __name__ == "__main__":
    (args, _) = parse_args(make_parser())
    main(*args)
