# Copyright 2026 The trl-rere authors. Licensed under the Apache License, Version 2.0.
"""SFT warm start for ReRe (BIGRec-style): TRL's SFTTrainer on prompt -> '"{title}"\\n' + EOS, loss on the completion.

    accelerate launch examples/sft.py --data_dir data/amazon --category Toys_and_Games \
        --model_name_or_path Qwen/Qwen2-0.5B --output_dir runs/rere-sft-toys \
        --num_train_epochs 10 --learning_rate 3e-4 --per_device_train_batch_size 16 --gradient_accumulation_steps 8

Items as semantic IDs (MiniOneRec's layout): add `--item_format sid --data_dir data/minionerec --category
Industrial_and_Scientific`; the catalog's code tokens are added to the tokenizer and the embeddings resized first.

The saved model is the starting point of `examples/toys.py --model_name_or_path runs/rere-sft-toys`. Without
`--output_dir` it goes to runs/sft-{category}. On a machine without CUDA, bf16 is off unless asked for and a
multi-process launch uses gloo, as in ReReConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser, get_peft_config

from _common import apply_cpu_defaults, check_model, default_output_dir, leave_output_dir_unset, load_data
from _common import mix_alignment_tasks
from trl_rere import add_sid_tokens
from trl_rere.data import sft_dataset
from trl_rere.item_format import ITEM_FORMATS


@dataclass
class ScriptArguments:
    data_dir: str = field(default="data", metadata={"help": "Folder that holds info/ and the split folders."})
    category: str = field(default="Toys_and_Games", metadata={"help": "Amazon category key."})
    train_split: str = field(default="train", metadata={"help": "Split to fine-tune on."})
    eval_split: str | None = field(default="valid", metadata={"help": "Split for the eval loss (None: no eval)."})
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


@dataclass
class RecSFTConfig(SFTConfig):
    """TRL's SFTConfig with ReReConfig's device defaults: TRL turns bf16 on, which transformers refuses on a CPU."""

    def __post_init__(self):
        apply_cpu_defaults(self)
        super().__post_init__()


def main(script_args: ScriptArguments, training_args: SFTConfig, model_args: ModelConfig):
    model_name = model_args.model_name_or_path or "Qwen/Qwen2-0.5B"
    splits = tuple(s for s in (script_args.train_split, script_args.eval_split) if s and s.lower() != "none")
    check_model(model_name)  # seconds; the data and the model load come after
    catalog, data = load_data(script_args.data_dir, script_args.category, splits, script_args.item_format)
    default_output_dir(training_args, f"sft-{script_args.category}")
    fmt, template = script_args.item_format, script_args.completion_template
    train = sft_dataset(data[script_args.train_split], template, item_format=fmt)
    if script_args.align_tasks:
        train = mix_alignment_tasks("sft", data[script_args.train_split], script_args.align_tasks, catalog,
                                    script_args.data_dir, script_args.category, fmt, training_args.seed, template)
    evaluation = sft_dataset(data[splits[1]], template, item_format=fmt) if len(splits) > 1 else None
    model, tokenizer = model_name, None
    if fmt == "sid":
        # every code must be one token before training: load the model here to grow its embeddings
        tokenizer = AutoTokenizer.from_pretrained(model_name)
        model = AutoModelForCausalLM.from_pretrained(model_name, **(training_args.model_init_kwargs or {}))
        added = add_sid_tokens(tokenizer, catalog, model=model)
        print(f"added {len(added)} semantic-ID code tokens to the tokenizer", flush=True)
    trainer = SFTTrainer(
        model=model,
        processing_class=tokenizer,
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        peft_config=get_peft_config(model_args),
    )
    trainer.train()
    trainer.save_model(training_args.output_dir)


if __name__ == "__main__":
    parser = TrlParser((ScriptArguments, RecSFTConfig, ModelConfig))
    leave_output_dir_unset(parser)
    main(*parser.parse_args_and_config())
