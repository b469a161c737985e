"""50-beam constrained evaluation with HF's default KV cache vs `trl_rere.decoding.beam_cache` (shared-prompt layers).

Setting: the Industrial_and_Scientific catalog (3,686 items) and the first `--users` test prompts of the split in the
short template of `reproductions/repro_industrial.py` (mean ~60 prompt tokens, titles of up to 68 tokens), a byte-level
BPE trained on titles and prompts, and a random Qwen2 of the reproduction's size (hidden 128, 4 layers, 2.1M
parameters), or with `--model` a checkpoint that repro_industrial.py saved (its SFT model and tokenizer: a trained
model ends its beams the way a real evaluation does, a random one wanders to the longest titles).
`constrained_beam_search` ranks the catalog for every prompt with 50 beams, in batches of `--batches`
prompts, with `shared_prompt_cache=False` (the default: HF's own cache layers after the one-time prompt prefill) and
`shared_prompt_cache=True`.
Both runs must return the same titles in the same order for every prompt (checked). Time per prompt is the median of
`--repeats` runs.

Run:  python benchmarks/beam_cache.py --model reproductions/_work/sft-<key>   (about 20 minutes on 2 CPU cores;
                                                                         `--batches 10`: about 4)
      python benchmarks/beam_cache.py --device cuda --dtype bfloat16 --size qwen2-0.5b --section beam_cache_cuda
                                     (a random model shaped like Qwen2-0.5B, with its 151,936-token vocabulary)
      python benchmarks/beam_cache.py --quick    (smoke run, does not write beam_cache.md)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from _results import BENCHMARKS, hardware, write_section  # noqa: E402  (benchmarks/ is the script's folder)
from reproductions.repro_industrial import CATEGORY, SHORT_TEMPLATE  # noqa: E402
from trl_rere.decoding import constrained_beam_search  # noqa: E402
from trl_rere.data import load_amazon  # noqa: E402
from trl_rere.testing import tiny_causal_lm, train_tokenizer  # noqa: E402
from trl_rere.trie import ItemTrie  # noqa: E402


# Qwen/Qwen2-0.5B's config.json, less what a random model does not need
QWEN2_05B = dict(hidden_size=896, num_layers=24, num_heads=14, num_key_value_heads=2, intermediate_size=4864,
                 vocab_size=151936, rope_theta=1_000_000.0, rms_norm_eps=1e-6)
REPRO = dict(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512)


def run(model, tok, prompts, trie, beams: int, batch: int, shared: bool):
    t0 = time.perf_counter()
    results = constrained_beam_search(
        model, tok, prompts, trie, num_beams=beams, batch_size=batch, shared_prompt_cache=shared
    )
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, [r.titles for r in results]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--model", default=None, help="a repro_industrial.py SFT folder (model + tokenizer); default random")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--beams", type=int, default=50)
    p.add_argument("--batches", default="10,25,50", help="prompts per generate call (comma list)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--size", default="repro", choices=["repro", "qwen2-0.5b"],
                   help="shape of the random model (ignored with --model)")
    p.add_argument("--section", default="beam_cache", help="section of benchmarks/beam_cache.md to write")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.users, a.beams, a.batches, a.repeats, a.no_write = 6, 8, "3", 1, True
    torch.set_num_threads(a.threads)
    try:
        catalog, ds = load_amazon(a.data_dir, CATEGORY, splits=("test",), max_history=2, template=SHORT_TEMPLATE)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    prompts = list(ds["test"]["prompt"][: a.users])
    if a.model:
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast.from_pretrained(a.model)
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
        label = "the reproduction SFT model"
    else:
        tok = train_tokenizer(list(catalog.titles) + prompts, kind="bpe", vocab_size=8192)
        model = tiny_causal_lm(tok, **(QWEN2_05B if a.size == "qwen2-0.5b" else REPRO), attn_implementation="sdpa")
        label = ("a random model shaped like Qwen2-0.5B" if a.size == "qwen2-0.5b"
                 else "a random Qwen2 of the reproduction size")
    model = model.to(device=a.device, dtype=getattr(torch, a.dtype)).eval()
    cfg = model.config
    shape = (f"{label} (hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers, {cfg.num_attention_heads} query / "
             f"{cfg.num_key_value_heads} key-value heads, {cfg.vocab_size:,}-token vocabulary"
             + (f"; titles use the first {len(tok):,} ids)" if cfg.vocab_size > len(tok) else ")"))
    trie = ItemTrie.from_catalog(catalog, tok)
    if model.device.type != "cpu":  # kernel selection and allocator warm-up stay out of the timings
        for shared in (False, True):
            run(model, tok, prompts[:2], trie, a.beams, 2, shared)
    rows, differ = [], 0
    for batch in [int(b) for b in a.batches.split(",")]:
        times = {True: [], False: []}
        titles = {}
        for _ in range(a.repeats):
            for shared in (False, True):  # alternate, so both see the same background load
                seconds, titles[shared] = run(model, tok, prompts, trie, a.beams, batch, shared)
                times[shared].append(seconds / len(prompts))
        plain, fast = statistics.median(times[False]), statistics.median(times[True])
        n_diff = sum(x != y for x, y in zip(titles[True], titles[False]))
        differ += n_diff
        rows.append(f"| {batch} | {batch * a.beams} | {1000 * plain:.0f} | {1000 * fast:.0f} | {plain / fast:.2f}x | "
                    f"{'yes' if not n_diff else f'NO: {n_diff} of {len(prompts)} prompts differ'} |")
        print(rows[-1], flush=True)
    table = "\n".join([
        "## Beam-search KV cache: HF default vs shared-prompt layers (`benchmarks/beam_cache.py`)"
        + ("" if a.section == "beam_cache" else f": `{a.section}`"), "",
        f"{a.users} Industrial test prompts, {a.beams} beams, catalog of {catalog.num_items} items, "
        f"{shape}, {a.dtype}; ms per prompt, median of {a.repeats} runs; {hardware(a.device)}"
        f"{'' if a.device != 'cpu' else f', {a.threads} threads'}.", "",
        "| prompts per call | rows (prompts x beams) | default cache, ms/prompt | shared-prompt cache, ms/prompt | "
        "speed-up | same rankings |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "The machine is shared with other jobs and its speed drifts (up to 2x within an hour here), so compare the two "
        "caches within a row (their runs alternate), not rows with each other or with other sections."
        if a.device == "cpu" else
        "The two caches' runs alternate, after one untimed warm-up search with each.",
    ])
    print(table)
    if not a.no_write:
        write_section(BENCHMARKS / "beam_cache.md", a.section, table)
    if differ:
        sys.exit("the two caches ranked the catalog differently")


if __name__ == "__main__":
    main()
