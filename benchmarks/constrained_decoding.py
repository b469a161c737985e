"""Cost of trie-constrained beam search, side by side on one model and one set of prompts.

Methods (all run the same number of decoding steps on the same model, prompts and beams):

  (a) unconstrained   plain HF beam search, no constraint (the baseline)
  (b) ours            `trl_rere.decoding.TrieLogitsProcessor` over the array `ItemTrie` (vectorised), followed
                      by the `TrieScoreRecorder` that `generate_beams` runs after it (timed separately)
  (c) HF prefix fn    HF's stock `PrefixConstrainedLogitsProcessor` (what `prefix_allowed_tokens_fn=` builds) over a
                      plain nested-dict trie written here
  (d) authors         the D3/ReRe `ConstrainedLogitsProcessor` re-implemented from its public description: a dict
                      keyed by the '-'-joined token ids of the prefix (first key: the prompt's last 3 tokens) ->
                      allowed tokens, a Python loop over every row each step, `log_softmax` of the scores and a fresh
                      (rows x vocab) mask of -1e6 added to them

Setting: a random Qwen2 model with Qwen2's vocabulary (151,936 logits) and a tiny body (hidden 64, 2 layers), so
that the vocabulary-sized work, where the constraint lives, is a large share of each step, and Qwen2's real tokenizer
(`shared/tokenizers/qwen2`, loaded offline):

  Toys  the 11,198 distinct real Toys-and-Games titles as completions '"{title}"\\n' + EOS, tokenized by Qwen2's
        tokenizer after the authors' prompt ending "### Response:\\n" (`ItemTrie.from_catalog`)
  1M    1,000,000 synthetic titles: a shared opening token, a Zipf-popular "brand" (1-3 tokens) and "series"
        (0-3 tokens) prefix, a Zipf-distributed tail, a shared closing token and EOS; lengths drawn from the Toys
        titles' Qwen2 lengths, tokens drawn from Qwen2's id range

Prompts are the authors' prompt (`trl_rere.data.build_prompt`: instruction, history line, "### Response:\\n") over a
history of 3-4 random Toys titles, tokenized by Qwen2 and left-padded (about 128 tokens). EOS is banned (in place,
before the constraint) and `max_new_tokens = STEPS`, so every method runs exactly STEPS steps (checked); a beam that
reaches the end of a short title before then is dropped, which does not change the per-step work. Per-step time =
generate time / STEPS (median of the repeats); the processor's own time is measured by a wrapper around it.

Run:  python benchmarks/constrained_decoding.py              (about 5-8 minutes on 2 CPU cores)
      python benchmarks/constrained_decoding.py --threads 1  (on a machine shared with other jobs)
      python benchmarks/constrained_decoding.py --quick      (smoke run)
The table is printed and written to benchmarks/constrained_decoding.md between this benchmark's markers.
"""

from __future__ import annotations

import argparse
import warnings
import gc
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import LogitsProcessor, LogitsProcessorList, Qwen2Config, Qwen2ForCausalLM  # noqa: E402
from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor  # noqa: E402

from _results import BENCHMARKS, write_section  # noqa: E402  (benchmarks/ is the script's folder)
from trl_rere.decoding import TrieScoreRecorder  # noqa: E402
from trl_rere.trie import ItemTrie  # noqa: E402


DATA = REPO.parent / "shared" / "data"
TOYS_INFO = DATA / "amazon" / "info" / "Toys_and_Games_5_2016-10-2018-11.txt"
QWEN2_TOKENIZER = REPO.parent / "shared" / "tokenizers" / "qwen2"
PROMPT_SUFFIX = "### Response:\n"

# glibc malloc returns every block over 32 MiB to the OS when it is freed, so each fresh (rows x vocab) tensor of a
# decoding step is page-faulted in again: that doubles the unconstrained step on CPU and would hide part of the
# constraint's cost. Decoding is measured with large blocks kept for reuse, as PyTorch's GPU caching allocator does.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**32)}

VOCAB = 151_936  # Qwen2's logits (its config's vocab_size; the tokenizer has 151,646 tokens)
EOS = 151_643  # Qwen2's <|endoftext|> (checked against the tokenizer)
PREFIX_INDEX = 3  # the authors' code keys the first step on the prompt's last 3 tokens (Qwen/Llama)
NUM_BEAMS = 16
HISTORY = (3, 4)  # titles per prompt history: about 128 Qwen2 tokens
STEPS = 8


# ---------------------------------------------------------------------------------------------------------------
# Catalogs as token-id sequences
# ---------------------------------------------------------------------------------------------------------------
def qwen2_tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(QWEN2_TOKENIZER)
    if tok.eos_token_id != EOS:
        raise RuntimeError(f"{QWEN2_TOKENIZER}: expected Qwen2's EOS {EOS}, got {tok.eos_token_id}")
    return tok


def toys_catalog_and_tokenizer():
    """The real Toys catalog and Qwen2's tokenizer."""
    from trl_rere.catalog import ItemCatalog

    return ItemCatalog.from_info_file(TOYS_INFO), qwen2_tokenizer()


def toys_sequences() -> list[list[int]]:
    """Real Toys titles as Qwen2 tokenizes them after the prompt ending (what `ItemTrie.from_catalog` does), + EOS."""
    from trl_rere.trie import tokenize_completions

    catalog, tok = toys_catalog_and_tokenizer()
    texts = ['"{}"\n'.format(t) for t in catalog.titles]
    return [s + [EOS] for s in tokenize_completions(texts, tok, PROMPT_SUFFIX)]


def toys_lengths() -> np.ndarray:
    return np.array([len(s) for s in toys_sequences()])


def synthetic_sequences(n: int, lengths_like: np.ndarray, seed: int = 0) -> list[list[int]]:
    """`n` synthetic titles with shared prefixes; lengths (EOS included) drawn from `lengths_like`."""
    rng = np.random.default_rng(seed)
    lengths = np.maximum(rng.choice(lengths_like, size=n).astype(np.int64), 4)
    num_words = 60_000
    words = rng.choice(VOCAB - 1, size=num_words + 2, replace=False).astype(np.int64)
    words[words >= EOS] += 1  # never EOS inside a title
    open_tok, close_tok, words = words[0], words[1], words[2:]

    def word_ranks(size, limit):  # log-uniform ranks: a heavy head and a long tail, like word frequencies
        return np.minimum((limit ** rng.random(size)).astype(np.int64) - 1, limit - 1)

    # Brands (1-3 tokens; Zipf-popular, so big brands have many titles) and per-brand series (0-3 tokens).
    n_brands, n_series = 40_000, 400_000
    brand_tok = words[word_ranks((n_brands, 3), 20_000)]
    brand_len = rng.integers(1, 4, size=n_brands)
    series_tok = words[word_ranks((n_series, 3), 40_000)]
    series_len = rng.integers(0, 4, size=n_series)
    brand = (rng.zipf(1.15, size=n) - 1) % n_brands
    series = (brand * 7919 + (rng.zipf(1.5, size=n) - 1) % 60) % n_series
    # Everything below works on the flat token stream of all titles.
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    title = np.repeat(np.arange(n), lengths)
    pos = np.arange(offsets[-1]) - offsets[title]
    flat = words[word_ranks(len(pos), num_words)]
    bl = brand_len[brand][title]
    sl = series_len[series][title]
    in_brand = (pos >= 1) & (pos < 1 + bl)
    flat[in_brand] = brand_tok[brand[title[in_brand]], pos[in_brand] - 1]
    in_series = (pos >= 1 + bl) & (pos < 1 + bl + sl)
    flat[in_series] = series_tok[series[title[in_series]], (pos - 1 - bl)[in_series]]
    flat[offsets[:-1]] = open_tok
    flat[offsets[1:] - 2] = close_tok
    flat[offsets[1:] - 1] = EOS
    del title, pos, bl, sl, in_brand, in_series
    flat = flat.tolist()
    offsets = offsets.tolist()
    return [flat[offsets[i] : offsets[i + 1]] for i in range(n)]


def catalog_sequences(name: str) -> list[list[int]]:
    if name == "toys":
        return toys_sequences()
    if name == "1m":
        return synthetic_sequences(1_000_000, toys_lengths())
    if name == "quick":
        return synthetic_sequences(20_000, toys_lengths())
    raise ValueError(name)


# ---------------------------------------------------------------------------------------------------------------
# The other tries
# ---------------------------------------------------------------------------------------------------------------
def build_dict_trie(seqs: list[list[int]]) -> dict:
    """A plain nested-dict trie: {token: {token: ...}}; every path ends in EOS -> {}."""
    root: dict = {}
    for s in seqs:
        node = root
        for t in s:
            node = node.setdefault(t, {})
    return root


def dict_trie_prefix_fn(root: dict, prompt_length: int, eos: int):
    """The usual user-written HF `prefix_allowed_tokens_fn`: walk the generated tokens down the dict trie."""

    def prefix_allowed_tokens_fn(batch_id, input_ids):
        node = root
        for t in input_ids[prompt_length:].tolist():
            node = node.get(t)
            if node is None:
                return [eos]  # HF raises on an empty list
        return list(node) or [eos]

    return prefix_allowed_tokens_fn


def get_hash(x):
    return "-".join(str(t) for t in x)


def build_authors_hash_dict(seqs: list[list[int]], prefix_ids: list[int]) -> dict:
    """The authors' `hash_dict`, built as in their code: for every title `ID = prefix + title + EOS`, the key of the
    first step is the prompt prefix's tokens, later keys are the generated tokens so far, all '-'-joined."""
    hash_dict: dict = {}
    p = len(prefix_ids)
    for s in seqs:
        ID = list(prefix_ids) + list(s)
        for i in range(p, len(ID)):
            hash_number = get_hash(ID[:i]) if i == p else get_hash(ID[p:i])
            if hash_number not in hash_dict:
                hash_dict[hash_number] = set()
            hash_dict[hash_number].add(ID[i])
    for key in hash_dict:
        hash_dict[key] = list(hash_dict[key])
    return hash_dict


def authors_prefix_fn(hash_dict: dict):
    def prefix_allowed_tokens_fn(batch_id, input_ids):
        hash_number = get_hash(input_ids)
        if hash_number in hash_dict:
            return hash_dict[hash_number]
        return []

    return prefix_allowed_tokens_fn


class AuthorsConstrainedLogitsProcessor(LogitsProcessor):
    """Re-implementation of the D3/ReRe `ConstrainedLogitsProcessor` (see the module docstring)."""

    def __init__(self, prefix_allowed_tokens_fn, num_beams: int, prefix_index: int = PREFIX_INDEX):
        self._prefix_allowed_tokens_fn = prefix_allowed_tokens_fn
        self._num_beams = num_beams
        self.prefix_index = prefix_index
        self.count = 0

    def __call__(self, input_ids, scores):
        scores = torch.nn.functional.log_softmax(scores, dim=-1)
        mask = torch.full_like(scores, -1000000)
        for batch_id, beam_sent in enumerate(input_ids.view(-1, self._num_beams, input_ids.shape[-1])):
            for beam_id, sent in enumerate(beam_sent):
                hash_key = sent[-self.prefix_index :] if self.count == 0 else sent[-self.count :]
                hash_key = hash_key.tolist()
                prefix_allowed_tokens = self._prefix_allowed_tokens_fn(batch_id, hash_key)
                if len(prefix_allowed_tokens) == 0:
                    continue
                mask[batch_id * self._num_beams + beam_id, prefix_allowed_tokens] = 0
        self.count += 1
        scores = scores + mask
        return scores


class Timed(LogitsProcessor):
    """Bans EOS (so that every method runs exactly STEPS steps), then runs and times the wrapped processor and, if
    given, the score recorder after it.

    Banning EOS in place costs O(rows); HF's `min_new_tokens` would instead add a few full (rows x vocab) passes per
    step to every method and so hide part of the constraint's overhead."""

    def __init__(self, inner=None, recorder=None):
        self.inner = inner
        self.recorder = recorder
        self.seconds = 0.0
        self.recorder_seconds = 0.0
        self.calls = 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        scores[:, EOS] = float("-inf")
        if self.inner is None:
            return scores
        t = time.process_time()  # CPU time: with one thread, the processor's own work, however busy the machine
        out = self.inner(input_ids, scores)
        self.seconds += time.process_time() - t
        if self.recorder is not None:
            t = time.process_time()
            out = self.recorder(input_ids, out)
            self.recorder_seconds += time.process_time() - t
        return out


# ---------------------------------------------------------------------------------------------------------------
# Trie build time and memory (run in a subprocess per structure)
# ---------------------------------------------------------------------------------------------------------------
def _proc_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def measure_build(catalog: str, structure: str) -> dict:
    """Build one structure over one catalog; returns seconds and the peak RSS growth while building (Linux: the
    high-water mark is reset just before, so the catalog's own token lists are not counted)."""
    if structure == "from_catalog":  # the real API: tokenize every title after the prompt ending, then build
        toys, tokenizer = toys_catalog_and_tokenizer()
        seqs = toys.titles
    else:
        seqs = catalog_sequences(catalog)
    prefix = response_prefix_ids(qwen2_tokenizer())
    gc.collect()
    have_proc = Path("/proc/self/clear_refs").exists()
    if have_proc:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _proc_status()["VmRSS"]
    else:  # pragma: no cover - non-Linux fallback: ru_maxrss (KiB on Linux, bytes on macOS)
        import resource

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    if structure == "array":
        trie = ItemTrie(seqs, eos_token_id=EOS, vocab_size=VOCAB, prompt_suffix=None)
        size = {"nodes": trie.num_nodes, "array_bytes": trie.nbytes()}
    elif structure == "from_catalog":
        trie = ItemTrie.from_catalog(toys, tokenizer)
        size = {"nodes": trie.num_nodes, "array_bytes": trie.nbytes()}
    elif structure == "dict":
        trie = build_dict_trie(seqs)
        size = {}
    elif structure == "hash":
        trie = build_authors_hash_dict(seqs, prefix)
        size = {"keys": len(trie)}
    else:
        raise ValueError(structure)
    seconds = time.perf_counter() - t
    if have_proc:
        peak = _proc_status()["VmHWM"] - before
    else:  # pragma: no cover
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"seconds": seconds, "peak_bytes": peak, "titles": len(seqs), **size}


def build_in_subprocess(catalog: str, structure: str, timeout: float = 600) -> dict:
    cmd = [sys.executable, __file__, "--measure-build", catalog, structure]
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}  # memory is measured with the default malloc
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if res.returncode != 0:
        return {"error": (res.stderr or res.stdout).strip().splitlines()[-1:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------------
def make_model(seed: int = 0) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=EOS,
        eos_token_id=EOS,
        pad_token_id=EOS,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).eval()


def make_prompts(titles: list[str], tok, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` of the authors' prompts over random Toys histories, Qwen2-tokenized and left-padded."""
    from trl_rere.decoding import left_pad
    from trl_rere.data import DEFAULT_INSTRUCTIONS, build_prompt

    rng = random.Random(seed)
    prompts = [
        build_prompt(rng.sample(titles, rng.randint(*HISTORY)), "Toys_and_Games", rng.choice(DEFAULT_INSTRUCTIONS))
        for _ in range(n)
    ]
    ids = tok(prompts, add_special_tokens=False)["input_ids"]
    ending = {tuple(i[-PREFIX_INDEX:]) for i in ids}
    if len(ending) != 1:  # the authors' processor keys its first step on these tokens
        raise RuntimeError(f"prompts end in different last {PREFIX_INDEX} tokens: {ending}")
    return left_pad(ids, EOS, "cpu")


def response_prefix_ids(tok) -> list[int]:
    """The prompt's last PREFIX_INDEX tokens (the end of "### Response:\\n"), on which the authors key step one."""
    from trl_rere.data import build_prompt

    return tok(build_prompt(["x"], "Toys_and_Games"), add_special_tokens=False)["input_ids"][-PREFIX_INDEX:]


def run_generate(model, prompts: tuple[torch.Tensor, torch.Tensor], processor: Timed, output_scores: bool):
    input_ids, attention_mask = prompts
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        do_sample=False,
        num_beams=NUM_BEAMS,
        num_return_sequences=NUM_BEAMS,
        length_penalty=0.0,
        early_stopping=False,
        max_new_tokens=STEPS,
        eos_token_id=EOS,
        pad_token_id=EOS,
        logits_processor=LogitsProcessorList([processor]),
        output_scores=output_scores,
        return_dict_in_generate=True,
        temperature=None,
        top_k=None,
        top_p=None,
    )
    return out.sequences


def method_factory(name: str, trie: ItemTrie | None, dict_trie, hash_dict, prompt_len: int):
    if name == "a":
        return lambda: Timed(None)
    if name == "b":
        from trl_rere.decoding import TrieLogitsProcessor

        def ours():
            processor = TrieLogitsProcessor(trie, num_beams=NUM_BEAMS)
            return Timed(processor, TrieScoreRecorder(processor))

        return ours
    if name == "c":
        fn = dict_trie_prefix_fn(dict_trie, prompt_len, EOS)
        return lambda: Timed(PrefixConstrainedLogitsProcessor(fn, NUM_BEAMS))
    if name == "d":
        fn = authors_prefix_fn(hash_dict)
        return lambda: Timed(AuthorsConstrainedLogitsProcessor(fn, NUM_BEAMS))
    raise ValueError(name)


METHOD_LABEL = {
    "a": "(a) unconstrained beam search",
    "b": "(b) ours: TrieLogitsProcessor (array trie) + TrieScoreRecorder",
    "c": "(c) HF prefix_allowed_tokens_fn + dict trie",
    "d": "(d) authors' ConstrainedLogitsProcessor",
}


def _relative_iqr(xs: list[float]) -> float:
    """Interquartile range over median: the run-to-run noise."""
    if len(xs) < 4:
        return float("nan")
    q = statistics.quantiles(xs, n=4)
    return (q[2] - q[0]) / statistics.median(xs)


def bench_decoding(model, trie, dict_trie, hash_dict, methods, prompts_list, repeats, output_scores, log):
    """Returns {(rows, method): {"step_ms", "proc_ms", "runs"}} and the sequences of each method's first run."""
    results, outputs = {}, {}
    for k, prompts in enumerate(prompts_list):
        rows = prompts[0].shape[0] * NUM_BEAMS
        factories = {m: method_factory(m, trie, dict_trie, hash_dict, prompts[0].shape[1]) for m in methods}
        times: dict[str, list[float]] = {m: [] for m in methods}
        cpu: dict[str, list[float]] = {m: [] for m in methods}
        proc: dict[str, list[float]] = {m: [] for m in methods}
        rec: dict[str, list[float]] = {m: [] for m in methods}
        reps = {m: repeats(rows, m) for m in methods}
        if k == 0:
            for m in methods:  # warm-up: code paths, allocator, the tries' device-array caches
                run_generate(model, prompts, factories[m](), output_scores)
        for r in range(max(reps.values())):
            for m in methods:  # interleaved, so that machine noise hits every method alike
                if r >= reps[m]:
                    continue
                p = factories[m]()
                gc.collect()
                t, c = time.perf_counter(), time.process_time()
                seqs = run_generate(model, prompts, p, output_scores)
                times[m].append(time.perf_counter() - t)
                cpu[m].append(time.process_time() - c)
                proc[m].append(p.seconds)
                rec[m].append(p.recorder_seconds)
                if p.calls != STEPS:
                    raise RuntimeError(f"method {m} ran {p.calls} steps instead of {STEPS}")
                outputs.setdefault((rows, m), seqs)
        for m in methods:
            step = statistics.median(times[m]) / STEPS * 1e3
            results[(rows, m)] = {
                "step_ms": step,
                "cpu_ms": statistics.median(cpu[m]) / STEPS * 1e3,
                "proc_ms": statistics.median(proc[m]) / STEPS * 1e3,
                "rec_ms": statistics.median(rec[m]) / STEPS * 1e3,
                "runs": len(times[m]),
                "spread": _relative_iqr(cpu[m]),
            }
            log(
                f"  rows={rows:4d} {METHOD_LABEL[m]:45s} {step:8.1f} ms/step wall, "
                f"{results[(rows, m)]['cpu_ms']:8.1f} CPU "
                f"(processor {results[(rows, m)]['proc_ms']:.2f} ms, "
                f"recorder {results[(rows, m)]['rec_ms']:.2f} ms; runs: "
                f"{', '.join(f'{t / STEPS * 1e3:.0f}' for t in times[m])})"
            )
    return results, outputs


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------
def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def render(decode: dict, builds: dict, meta: dict) -> str:
    lines = []
    lines.append("## Constrained decoding (`benchmarks/constrained_decoding.py`)")
    lines.append("")
    lines.append(
        f"Machine: {meta['machine']}; torch {meta['torch']}, transformers {meta['transformers']}, "
        f"{meta['threads']} thread(s), {meta['malloc']}. "
        f"Model: Qwen2, vocab {VOCAB:,}, hidden 64, 2 layers (random weights, fp32); Qwen2's tokenizer for titles "
        f"and prompts. {NUM_BEAMS} beams per prompt, the authors' prompt over {HISTORY[0]}-{HISTORY[1]} random Toys "
        f"titles ({meta['prompt_tokens']} tokens, left-padded), exactly {STEPS} decoding steps "
        f"(EOS banned, `max_new_tokens={STEPS}`), `output_scores={meta['output_scores']}`. "
        f"Per-step time = median generate time / {STEPS}, as wall time and as this process's CPU time (steadier when "
        f"other jobs share the machine); overhead = per-step time over (a)'s, measured in the same run with the "
        f"methods interleaved; constraint = the logits processor's own CPU time per step, from a timer around it; "
        f"recorder = the `TrieScoreRecorder` after it (what `generate_beams` adds for the beam scores); share = both "
        f"over (a)'s CPU step time; run-to-run IQR = interquartile range / median of the CPU times, the "
        f"noise against which the end-to-end overhead has to be read. Date: {meta['date']}. "
        f"{meta.get('load', '')}"
    )
    lines.append("")
    lines.append("Goals: overhead of (b) <= 5% at 64 rows and independent of catalog size; trie build < 1 s (Toys), "
                 "< 60 s and < 2 GiB (1M titles).")
    lines.append("")
    lines.append(
        "| catalog | rows (prompts x beams) | method | ms / step (wall) | ms / step (CPU) | "
        "overhead vs (a): wall / CPU | constraint ms / step | recorder ms / step | constraint + recorder / (a)'s step "
        "| runs | run-to-run IQR |"
    )
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (cat, rows, m), r in decode.items():
        base = decode.get((cat, rows, "a"))
        if m == "a":
            over = share = "-"
        elif base:
            over = (
                f"{(r['step_ms'] / base['step_ms'] - 1) * 100:+.1f}% / {(r['cpu_ms'] / base['cpu_ms'] - 1) * 100:+.1f}%"
            )
            share = f"{(r['proc_ms'] + r['rec_ms']) / base['cpu_ms'] * 100:.1f}%"
        else:
            over = share = "?"
        spread = "-" if math.isnan(r["spread"]) else f"{r['spread'] * 100:.0f}%"
        lines.append(
            f"| {meta['catalog_label'][cat]} | {rows} ({rows // NUM_BEAMS} x {NUM_BEAMS}) | {METHOD_LABEL[m]} | "
            f"{r['step_ms']:.1f} | {r['cpu_ms']:.1f} | {over} | {r['proc_ms']:.2f} | "
            f"{r['rec_ms']:.2f} | {share} | {r['runs']} | "
            f"{spread} |"
        )
    verdicts = []
    for cat in meta["catalog_label"]:
        a, b = decode.get((cat, 64, "a")), decode.get((cat, 64, "b"))
        if a and b:
            share = (b["proc_ms"] + b["rec_ms"]) / a["cpu_ms"] * 100
            over = (b["cpu_ms"] / a["cpu_ms"] - 1) * 100
            noise = "" if math.isnan(a["spread"]) else f", run-to-run IQR {a['spread'] * 100:.0f}%"
            verdicts.append(
                f"{meta['catalog_label'][cat]}: the constraint's and recorder's own time is {share:.1f}% of (a)'s step "
                f"-> {'met' if share <= 5 else 'MISSED'} (end to end {over:+.1f}% CPU{noise})"
            )
    if verdicts:
        lines.append("")
        lines.append("Goal check, (b) at 64 rows (<= 5%): " + "; ".join(verdicts) + ".")
    for note in meta.get("decode_notes", []):
        lines.append("")
        lines.append(note)
    lines.append("")
    lines.append("Trie build (each in a fresh subprocess; memory = peak RSS growth during the build, the input token "
                 "lists excluded):")
    lines.append("")
    lines.append("| catalog | structure | titles | build time | peak memory | size |")
    lines.append("|---|---|---:|---:|---:|---|")
    labels = {
        "from_catalog": "ours: `ItemTrie.from_catalog` (tokenize 11k titles + build)",
        "array": "ours: array `ItemTrie` from token lists",
        "dict": "nested-dict trie (c)",
        "hash": "authors' hash dict (d)",
    }
    for (cat, structure), r in builds.items():
        if "error" in r:
            lines.append(f"| {meta['catalog_label'][cat]} | {labels[structure]} | | failed: {r['error']} | | |")
            continue
        if "skipped" in r:
            lines.append(f"| {meta['catalog_label'][cat]} | {labels[structure]} | | skipped: {r['skipped']} | | |")
            continue
        size = ""
        if "nodes" in r:
            size = f"{r['nodes']:,} nodes, arrays {fmt_bytes(r['array_bytes'])}"
        elif "keys" in r:
            size = f"{r['keys']:,} keys"
        lines.append(
            f"| {meta['catalog_label'][cat]} | {labels[structure]} | {r['titles']:,} | {r['seconds']:.2f} s | "
            f"{fmt_bytes(r['peak_bytes'])} | {size} |"
        )
    checks = []
    toys = builds.get(("toys", "from_catalog"), {})
    if "seconds" in toys:
        checks.append(f"Toys `from_catalog` {toys['seconds']:.2f} s (< 1 s: {'met' if toys['seconds'] < 1 else 'MISSED'})")
    big = builds.get(("1m", "array"), {})
    if "seconds" in big:
        checks.append(
            f"1M {big['seconds']:.1f} s (< 60 s: {'met' if big['seconds'] < 60 else 'MISSED'}), "
            f"{fmt_bytes(big['peak_bytes'])} (< 2 GiB: {'met' if big['peak_bytes'] < 2 * 2**30 else 'MISSED'})"
        )
    if checks:
        lines.append("")
        lines.append("Goal check, trie build: " + "; ".join(checks) + ".")
    for note in meta.get("build_notes", []):
        lines.append("")
        lines.append(note)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure-build", nargs=2, metavar=("CATALOG", "STRUCTURE"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small smoke run (20k synthetic titles, 1 repeat)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per method at 64 rows (2 fewer at 256)")
    parser.add_argument(
        "--threads", type=int, default=2,
        help="torch intra-op threads (default 2); on a machine shared with other jobs use 1: OpenMP threads spin-wait "
             "for each other and a step can take 4x longer",
    )
    parser.add_argument("--output-scores", action="store_true",
                        help="pass output_scores=True (adds one rows x vocab copy per step to every method; "
                             "generate_beams no longer does, it sums the processor's recorded edge scores)")
    parser.add_argument("--dict-1m", action="store_true",
                        help="also decode with the nested-dict trie (c) on the 1M catalog (needs several GB)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch constrained_decoding.md")
    parser.add_argument("--system-malloc", action="store_true",
                        help="decode with glibc's default malloc (large tensors page-faulted in at every step)")
    args = parser.parse_args()
    if not args.measure_build and not args.system_malloc and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        # glibc reads these at start-up: run again with them set.
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], {**os.environ, **MALLOC_ENV})
    torch.set_num_threads(args.threads)
    # Synthetic catalogs contain a few identical token sequences; the trie merges them (and warns).
    warnings.filterwarnings("ignore", message=".*exactly the same tokens as another title.*")

    if args.measure_build:
        print(json.dumps(measure_build(*args.measure_build)))
        return

    if not TOYS_INFO.exists():
        sys.exit(f"the Toys catalog is missing: {TOYS_INFO}")

    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)

    import transformers

    meta = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "output_scores": args.output_scores,
        "malloc": "default glibc malloc" if args.system_malloc else (
            "glibc malloc keeping freed large blocks for reuse (MALLOC_MMAP_THRESHOLD_ = MALLOC_TRIM_THRESHOLD_ = "
            "4 GiB), as PyTorch's GPU caching allocator does; with the default, every fresh (rows x vocab) tensor is "
            "page-faulted in and (a)'s step takes about twice as long (`--system-malloc`)"
        ),
        "date": time.strftime("%Y-%m-%d"),
        "catalog_label": {"toys": "Toys (11,198 titles)", "1m": "synthetic 1M", "quick": "synthetic 20k"},
        "decode_notes": [],
        "build_notes": [],
    }

    # -- trie builds -------------------------------------------------------------------------------------------
    builds = {}
    catalogs = ["quick"] if args.quick else ["toys", "1m"]
    for cat in catalogs:
        for structure in ("from_catalog", "array", "dict", "hash"):
            if structure == "from_catalog" and cat != "toys":
                continue
            if cat == "1m" and structure == "hash":
                builds[(cat, structure)] = {"skipped": "O(titles x length^2) string keys; not built at 1M"}
                continue
            if cat == "1m" and structure == "dict" and not args.dict_1m:
                builds[(cat, structure)] = {"skipped": "needs several GB (run with --dict-1m)"}
                continue
            log(f"building {structure} trie for {cat} in a subprocess")
            builds[(cat, structure)] = build_in_subprocess(cat, structure)
            log(f"  -> {builds[(cat, structure)]}")

    # -- decoding ------------------------------------------------------------------------------------------------
    model = make_model()
    toys, tok = toys_catalog_and_tokenizer()
    prompt_sets = [make_prompts(toys.titles, tok, 4, seed=1), make_prompts(toys.titles, tok, 16, seed=2)]
    if args.quick:
        prompt_sets = prompt_sets[:1]
    lengths = torch.cat([mask.sum(1) for _, mask in prompt_sets])
    meta["prompt_tokens"] = f"{int(lengths.min())}-{int(lengths.max())}, mean {lengths.float().mean():.0f}"
    prefix_ids = response_prefix_ids(tok)

    def repeats(rows, m):
        if args.quick:
            return 1
        n = args.repeats if rows <= 64 else max(1, args.repeats - 2)
        # (a) and (b) differ by a few percent, less than the run-to-run noise of a shared machine: more runs.
        return 2 * n if m in ("a", "b") else n

    decode = {}
    for cat in catalogs:
        log(f"catalog {cat}: preparing sequences and tries")
        seqs = catalog_sequences(cat)
        trie = ItemTrie(seqs, eos_token_id=EOS, vocab_size=VOCAB, prompt_suffix=None)
        methods = ["a", "b"]
        dict_trie = hash_dict = None
        if cat != "1m" or args.dict_1m:
            dict_trie = build_dict_trie(seqs)
            methods.append("c")
        if cat != "1m":
            hash_dict = build_authors_hash_dict(seqs, prefix_ids)
            methods.append("d")
        del seqs
        gc.collect()
        log(f"catalog {cat}: decoding with methods {methods}")
        res, outs = bench_decoding(model, trie, dict_trie, hash_dict, methods, prompt_sets, repeats,
                                   args.output_scores, log)
        for (rows, m), r in res.items():
            decode[(cat, rows, m)] = r
        # Sanity: (b) and (c) implement the same constraint and must pick the same beams.
        for rows in sorted({k[0] for k in outs}):
            if (rows, "c") in outs:
                same = torch.equal(outs[(rows, "b")], outs[(rows, "c")])
                log(f"  sanity: (b) and (c) give identical sequences at {rows} rows: {same}")
                if not same:
                    meta["decode_notes"].append(f"WARNING: (b) and (c) differ on {cat} at {rows} rows.")
        del trie, dict_trie, hash_dict
        gc.collect()

    if not args.dict_1m and not args.quick:
        meta["decode_notes"].append(
            "On the 1M catalog only (a) and (b) decode: the nested-dict trie of 1M titles needs several GB (see the "
            "build table; run with `--dict-1m` to include (c)), and the authors' hash dict stores every prefix of "
            "every title as a string key (O(titles x length^2)), so it is not built. Their per-step cost does not "
            "depend on the catalog size anyway: it is the Python loop over rows plus the full-mask passes."
        )
    meta["load"] = (
        f"Load average (1 min) at start / end: {load_start:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        f"(other jobs shared the machine: single timings are noisy). Total benchmark time: "
        f"{(time.perf_counter() - t_start) / 60:.1f} min."
    )
    section = render(decode, builds, meta)
    print()
    print(section)
    if not args.no_write and not args.quick:
        page = BENCHMARKS / "constrained_decoding.md"
        write_section(page, "constrained_decoding", section)
        print(f"\nwritten to {page.relative_to(REPO)}")
    log("done")


if __name__ == "__main__":
    main()
