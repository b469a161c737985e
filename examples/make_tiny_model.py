# Copyright 2026 The trl-rere authors. Licensed under the Apache License, Version 2.0.
"""Make a tiny, randomly initialised Qwen2-style model and a tokenizer trained on a catalog: a local model folder on
which the whole chain (sft.py -> toys.py -> evaluate.py) runs on a CPU in minutes, without the hub.

    python examples/make_tiny_model.py --data_dir ../shared/data/amazon --category Industrial_and_Scientific \
        --output_dir runs/tiny-model

The tokenizer is a byte-level BPE (as Qwen's) trained on the catalog's titles and the prompts of one split, so any
text round-trips; with `--item_format sid` every semantic-ID code is added as one token before the model is built.
The model has a few hundred thousand parameters and knows nothing: warm-start it with examples/sft.py. It stands in for
a real checkpoint (Qwen/Qwen2-0.5B) only to check that a pipeline runs, not for results.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from _common import fail, load_data
from transformers import HfArgumentParser

from trl_rere.sid_tokens import add_item_tokens
from trl_rere.item_format import ITEM_FORMATS
from trl_rere.testing import tiny_causal_lm, train_tokenizer


@dataclass
class TinyModelArguments:
    data_dir: str = field(metadata={"help": "Folder that holds info/ and the split folders."})
    category: str = field(default="Toys_and_Games", metadata={"help": "Amazon category key."})
    category_name: str | None = field(
        default=None,
        metadata={"help": "What the title prompt calls the items ('The user has palyed the following {category_name}s before: ...'); needed for a category other than the Amazon ones the prompts know, e.g. 'book' for --category Books."},
    )
    output_dir: str = field(default="runs/tiny-model", metadata={"help": "Where to save the model and tokenizer."})
    split: str | None = field(
        default=None, metadata={"help": "Split whose prompts the tokenizer learns from (default: the first of "
                                "train, valid, test that has files)."}
    )
    item_format: str = field(
        default="title", metadata={"help": "How items are written: 'title' or 'sid'.", "choices": sorted(ITEM_FORMATS)}
    )
    vocab_size: int = field(default=2048, metadata={"help": "Tokenizer vocabulary size (before SID codes)."})
    hidden_size: int = field(default=64, metadata={"help": "Model width."})
    num_layers: int = field(default=2, metadata={"help": "Decoder layers."})
    max_prompts: int = field(default=2000, metadata={"help": "Prompts the tokenizer learns from, at most."})
    seed: int = field(default=0, metadata={"help": "Seed of the initialisation."})


def main(args: TinyModelArguments) -> Path:
    split = args.split
    if split is None:
        pattern = f"{glob.escape(args.category)}_5_*.csv"
        split = next((s for s in ("train", "valid", "test") if glob.glob(str(Path(args.data_dir, s, pattern)))),
                     "train")  # none: load_data names the files it looked for
    catalog, data = load_data(args.data_dir, args.category, (split,), args.item_format, {split: "--split"},
                              args.category_name)
    prompts = list(data[split]["prompt"][: args.max_prompts])
    tokenizer = train_tokenizer(list(catalog.titles) + prompts, kind="bpe", vocab_size=args.vocab_size)
    add_item_tokens(tokenizer, catalog, args.item_format)  # before the model: every code gets its own embedding
    if args.hidden_size % 2:
        fail(f"--hidden_size must be even (2 attention heads), got {args.hidden_size}")
    model = tiny_causal_lm(tokenizer, hidden_size=args.hidden_size, num_layers=args.num_layers, seed=args.seed)
    out = Path(args.output_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    print(f"saved a tiny Qwen2-style model ({params / 1e6:.2f}M parameters, random weights) and its tokenizer "
          f"({len(tokenizer):,} tokens, trained on {len(catalog):,} {args.item_format}s of {args.category} and "
          f"{len(prompts):,} {split} prompts) to {out}; next: python examples/sft.py --model_name_or_path {out}",
          flush=True)
    return out


if __name__ == "__main__":
    (tiny_args,) = HfArgumentParser(TinyModelArguments).parse_args_into_dataclasses()
    main(tiny_args)
