# Copyright 2026 The trl-rere authors. Licensed under the Apache License, Version 2.0.
"""SFT warm start for ReRe (BIGRec-style): TRL's SFTTrainer on prompt -> '"{title}"\\n' + EOS, loss on the completion.

    accelerate launch examples/sft.py --data_dir data --category Toys_and_Games \
        --model_name_or_path Qwen/Qwen2-0.5B --output_dir rere-sft-toys \
        --num_train_epochs 10 --learning_rate 3e-4 --per_device_train_batch_size 16 --gradient_accumulation_steps 8

The saved model is the starting point of `examples/toys.py --model_name_or_path rere-sft-toys`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser, get_peft_config

from trl_rere.data import load_amazon, sft_dataset


@dataclass
class ScriptArguments:
    data_dir: str = field(default="data", metadata={"help": "Folder with the D3/ReRe info/ and split CSV files."})
    category: str = field(default="Toys_and_Games", metadata={"help": "Amazon category key."})
    train_split: str = field(default="train", metadata={"help": "Split to fine-tune on."})
    eval_split: str | None = field(default="valid", metadata={"help": "Split for the eval loss (None: no eval)."})
    completion_template: str = field(default='"{title}"\n', metadata={"help": "Completion text; EOS is appended."})


def main(script_args: ScriptArguments, training_args: SFTConfig, model_args: ModelConfig):
    splits = tuple(s for s in (script_args.train_split, script_args.eval_split) if s)
    try:
        _, data = load_amazon(script_args.data_dir, script_args.category, splits=splits)
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")
    train = sft_dataset(data[script_args.train_split], script_args.completion_template)
    evaluation = sft_dataset(data[script_args.eval_split], script_args.completion_template) if script_args.eval_split else None
    trainer = SFTTrainer(
        model=model_args.model_name_or_path or "Qwen/Qwen2-0.5B",
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        peft_config=get_peft_config(model_args),
    )
    trainer.train()
    trainer.save_model(training_args.output_dir)


if __name__ == "__main__":
    parser = TrlParser((ScriptArguments, SFTConfig, ModelConfig))
    main(*parser.parse_args_and_config())
