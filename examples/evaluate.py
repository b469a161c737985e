# Copyright 2026 The trl-rere authors. Licensed under the Apache License, Version 2.0.
"""Rank the catalog for every test user with a saved model (50-beam trie-constrained search) and report HR@K/NDCG@K.

    accelerate launch examples/evaluate.py --model_name_or_path runs/rere-Toys_and_Games --data_dir data/amazon \
        --category Toys_and_Games --split test --predictions_file runs/rere-Toys_and_Games/predictions.jsonl

The model path (or hub id), its tokenizer and the data files are checked first, so a typo stops the run within
seconds. HR@K is reported for the cut-offs K up to `--num_beams` (a K beyond the beams searched would repeat the last
one). Batches of 32 prompts on a GPU, 4 on a CPU, unless `--batch_size` is given.

Threads: under `python` on a CPU, torch uses one thread per core; `accelerate launch` sets OMP_NUM_THREADS to
`--num_cpu_threads_per_process` (1 by default; with `--cpu` the physical cores divided by the processes). The small
per-step matrices of the beam search gain little from threads and lose to their synchronisation, far more so when
other jobs hold the cores (benchmarks/eval_threads.md: 19x on a shared 2-core machine); the run prints the thread
count it used, and OMP_NUM_THREADS=1 makes `python` and `accelerate launch` equal.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import torch
from _common import check_model, check_item_vocab, default_eval_batch_size, load_data, load_tokenizer
from accelerate import PartialState
from transformers import AutoModelForCausalLM, HfArgumentParser

from trl_rere import ItemTrie
from trl_rere.evaluation import DEFAULT_KS, evaluate_ranking, format_metrics_table
from trl_rere.item_format import DEFAULT_PROMPT_SUFFIX, ITEM_FORMATS


@dataclass
class EvaluateArguments:
    model_name_or_path: str = field(metadata={"help": "A saved model folder (or hub id)."})
    data_dir: str = field(default="data", metadata={"help": "Folder that holds info/ and the split folders."})
    category: str = field(default="Toys_and_Games", metadata={"help": "Amazon category key."})
    category_name: str | None = field(
        default=None,
        metadata={"help": "What the title prompt calls the items ('The user has palyed the following {category_name}s before: ...'); needed for a category other than the Amazon ones the prompts know, e.g. 'book' for --category Books."},
    )
    split: str = field(default="test", metadata={"help": "Split to rank."})
    num_beams: int = field(default=50, metadata={"help": "Beams per user (the paper: 50)."})
    batch_size: int | None = field(
        default=None, metadata={"help": "Prompts per beam search (default: 32 on a GPU, 4 on a CPU)."}
    )
    max_samples: int | None = field(default=None, metadata={"help": "Rank only the first N users."})
    ks: list[int] = field(
        default_factory=lambda: list(DEFAULT_KS), metadata={"help": "Cut-offs K (those above --num_beams are left out)."}
    )
    item_format: str = field(
        default="title", metadata={"help": "How items are written: 'title' or 'sid'.", "choices": sorted(ITEM_FORMATS)}
    )
    completion_template: str | None = field(
        default=None, metadata={"help": "As used in training (default: the item format's)."}
    )
    prompt_suffix: str = field(default=DEFAULT_PROMPT_SUFFIX, metadata={"help": "The prompts' fixed ending."})
    predictions_file: str | None = field(default=None, metadata={"help": "Write ranked predictions (JSONL)."})
    output_file: str | None = field(default=None, metadata={"help": "Write the metrics as JSON."})
    dtype: str = field(default="auto", metadata={"help": "Model dtype: auto, bfloat16, float32."})


def main(args: EvaluateArguments) -> dict:
    check_model(args.model_name_or_path)
    catalog, data = load_data(args.data_dir, args.category, (args.split,), args.item_format, {args.split: "--split"},
                              args.category_name)
    dataset = data[args.split]
    total = len(dataset)
    if args.max_samples:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    ks = sorted(k for k in args.ks if k <= args.num_beams)
    state = PartialState()
    tokenizer = load_tokenizer(args.model_name_or_path, padding_side="left")
    check_item_vocab(tokenizer, catalog, args.item_format, args.model_name_or_path,
                     f"--data_dir {args.data_dir} --category {args.category}")
    batch_size = args.batch_size or default_eval_batch_size()
    if state.is_main_process:
        dropped = sorted(set(args.ks) - set(ks))
        note = f"; HR@K for K > {args.num_beams} beams left out ({', '.join(map(str, dropped))})" if dropped else ""
        print(f"ranking {len(dataset):,} of {total:,} {args.split} users over {len(catalog):,} items with "
              f"{args.num_beams} beams, {batch_size} prompts per batch{note}", flush=True)
    dtype = args.dtype if args.dtype == "auto" else getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(args.model_name_or_path, dtype=dtype).to(state.device)
    trie = ItemTrie.from_catalog(
        catalog, tokenizer, args.completion_template, args.prompt_suffix, item_format=args.item_format
    )
    start = time.perf_counter()
    metrics = evaluate_ranking(
        model,
        tokenizer,
        dataset,
        trie,
        num_beams=args.num_beams,
        ks=ks,
        batch_size=batch_size,
        predictions_file=args.predictions_file,
        accelerator=state,
    )
    seconds = time.perf_counter() - start
    if state.is_main_process:
        print(f"ranked {metrics['num_examples']:,} users in {seconds:.1f} s ({torch.get_num_threads()} torch threads "
              f"per process on {state.num_processes} process(es); OMP_NUM_THREADS sets them)", flush=True)
        title = (f"{args.model_name_or_path} on {args.category}/{args.split}: {metrics['num_examples']:,} users, "
                 f"{len(catalog):,} items, {args.num_beams} beams")
        print(format_metrics_table(metrics, title=title))
        if args.output_file:
            with open(args.output_file, "w") as f:
                json.dump(metrics, f, indent=2)
    return metrics


if __name__ == "__main__":
    (eval_args,) = HfArgumentParser(EvaluateArguments).parse_args_into_dataclasses()
    main(eval_args)
