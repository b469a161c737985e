"""Scoring a GRPO batch: TRL's full-sequence log-probs vs `shared_prompt_logprobs` (each group's prompt run once).

Per RL step GRPO scores every completion with the policy (forward + backward, in the loss) and the reference model
(forward, no gradient). TRL 1.16 does both over prompt + completion for each of the P x G rows
(`GRPOTrainer._get_per_token_logps_and_entropies`, called here unchanged); `trl_rere.group_logprobs.group_log_probs`
runs each of the P prompts once and only the completions on top of their KV cache. Both get the same random Qwen2
(`--hidden`, `--layers`, fused log-prob head as GRPOTrainer patches it), the same left-padded prompts (random token
ids, lengths as in the setting) and right-padded completions. The two are timed in alternation, `--repeats` times,
after one warm-up each; the table gives medians and the largest log-prob difference between the two. On CPU both run
with the reproductions' benchmark shims (`benchmarks/_cpu.py`: TRL's log-prob head scores only completion positions,
as it does on Triton devices; without them TRL's CPU path scores every prompt position against the whole vocabulary,
which would flatter the shared path).

Settings (`--setting`, both by default):
  sid    the SID reproduction's shape: 64 prompts x G=16, prompts of 61 tokens, completions of 5 (3 codes + newline +
         EOS), the 1,065-token vocabulary (`reproductions/repro_sid.py`)
  title  a title catalog's shape: 4 prompts x G=16, prompts of 220 tokens (the authors' prompt with 10 titles),
         completions of 24, Qwen2's 151,936-token vocabulary

Run:  python benchmarks/group_logprobs.py            (about 2 minutes on 2 CPU cores; writes group_logprobs.md)
      python benchmarks/group_logprobs.py --quick    (seconds; group_logprobs.md untouched)
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for trl_rere
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from _cpu import install_cpu_shims  # noqa: E402
from _results import BENCHMARKS, hardware, write_section  # noqa: E402

from trl_rere.group_logprobs import group_log_probs  # noqa: E402


SETTINGS = {  # name: (prompts, G, prompt tokens, completion tokens, vocabulary)
    "sid": (64, 16, 61, 5, 1065),
    "title": (4, 16, 220, 24, 151936),
}


def make_batch(prompts, G, p_len, c_len, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids, mask = [], []
    for _ in range(prompts):
        n = int(torch.randint(p_len * 3 // 4, p_len + 1, (1,), generator=g))  # left padding to the batch's longest
        prompt = torch.randint(3, vocab, (n,), generator=g).tolist()
        for _ in range(G):
            m = int(torch.randint(max(1, c_len - 2), c_len + 1, (1,), generator=g))
            comp = torch.randint(3, vocab, (m,), generator=g).tolist()
            ids.append([0] * (p_len - n) + prompt + comp + [0] * (c_len - m))
            mask.append([0] * (p_len - n) + [1] * (n + m) + [0] * (c_len - m))
    return torch.tensor(ids), torch.tensor(mask)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", default="sid,title")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    a.device, a.cpu_shims = "cpu", "off" if a.quick else "on"
    install_cpu_shims(a)
    from accelerate import Accelerator
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl import GRPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    trl_self = SimpleNamespace(accelerator=Accelerator(cpu=True))  # all TRL's method uses of `self`
    rows = []
    for name in a.setting.split(","):
        P, G, p_len, c_len, vocab = SETTINGS[name]
        if a.quick:
            P, G, p_len, c_len = 2, 4, 12, 3
        cfg = Qwen2Config(vocab_size=vocab, hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=4,
                          num_key_value_heads=4, intermediate_size=4 * a.hidden, tie_word_embeddings=True,
                          max_position_embeddings=1024)
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(cfg)
        add_fused_lm_head(model)
        ids, mask = make_batch(P, G, p_len, c_len, vocab)
        valid = mask[:, -c_len:].bool()

        def trl_scoring():
            return GRPOTrainer._get_per_token_logps_and_entropies(trl_self, model, ids, mask, c_len)[0]

        def shared_scoring():
            return group_log_probs(model, ids, mask, c_len)[0]

        times = {"trl": {"policy": [], "reference": []}, "shared": {"policy": [], "reference": []}}
        diffs = []
        for rep in range(a.repeats + 1):
            out = {}
            for which, fn in (("trl", trl_scoring), ("shared", shared_scoring)):
                model.train()
                model.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                lp = fn()
                (lp * valid).sum().backward()
                t1 = time.perf_counter()
                model.eval()
                with torch.no_grad():
                    out[which] = fn()
                t2 = time.perf_counter()
                if rep:  # the first round warms up
                    times[which]["policy"].append(t1 - t0)
                    times[which]["reference"].append(t2 - t1)
            diffs.append(float((out["trl"] - out["shared"])[valid].abs().max()))
        med = {w: {k: statistics.median(v) for k, v in d.items()} for w, d in times.items()}
        tot = {w: med[w]["policy"] + med[w]["reference"] for w in med}
        rows.append(f"| {name} | {P} x {G} | {p_len} + {c_len} | {vocab:,} | {med['trl']['policy']:.3f} | "
                    f"{med['shared']['policy']:.3f} | {med['trl']['reference']:.3f} | "
                    f"{med['shared']['reference']:.3f} | {tot['trl'] / tot['shared']:.2f}x | {max(diffs):.1e} |")
        print(rows[-1], flush=True)

    table = "\n".join([
        "## Scoring a GRPO batch: TRL's full sequences vs each group's prompt once (`benchmarks/group_logprobs.py`)",
        "",
        f"Command: `python benchmarks/group_logprobs.py`; {hardware('cpu')}, {a.threads} threads; "
        f"{datetime.date.today().isoformat()}. Random Qwen2, hidden {a.hidden}, {a.layers} layers, fp32; medians of "
        f"{a.repeats} alternating repeats, seconds per batch; CPU shims: {', '.join(a.shims) or 'none'}. Policy = "
        "forward + backward (the loss's scoring), reference = forward without gradient; the speed-up is over both.",
        "",
        "| setting | prompts x G | prompt + completion tokens | vocabulary | policy, TRL | policy, shared | "
        "reference, TRL | reference, shared | speed-up | max abs log-prob diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    print(table)
    if not a.quick:
        write_section(BENCHMARKS / "group_logprobs.md", "group_logprobs", table)


if __name__ == "__main__":
    main()
