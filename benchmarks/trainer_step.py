"""Time per training step: `ReReTrainer` (trie-constrained beam search) vs stock `trl.GRPOTrainer` (sampling).

Both trainers get the same tiny model (a random Qwen2, hidden 128, 4 layers, 4 heads, byte-level BPE vocabulary
trained on the catalog and prompts), the same data (`trl_rere.data.synthetic_catalog_dataset`: the authors' prompt
template, `prompt` / `target` columns), the same batch (P prompts x G completions), the same reward function
(`trl_rere.rule_reward`), the same optimisation settings (lr, beta with a reference model, `loss_type="grpo"`, max
grad norm, no gradient checkpointing, fp32) and the same completion budget: GRPO samples up to
`max_completion_length = trie.max_length` new tokens, the longest title completion the beam search can produce.

What differs is exactly what ReRe changes: ReRe runs one constrained beam search of G beams per unique prompt
(`sampling_strategy="beam"`), GRPO samples G completions per prompt without constraint (TRL's transformers path).

Measurement: the two trainers run in two threads that take strict turns, one optimizer step each (a step is timed
from `on_step_begin` to `on_step_end`: generation, rewards, reference log-probs, forward/backward and the optimizer
step); only the thread holding the turn runs at all, so the two never compete for the cores and both see the same
background load. The first `--warmup` steps of each are dropped. Generation time is measured by wrapping each
trainer's `_generate_single_turn`. Report: median and interquartile range of the step times, the ratio of medians
ReRe / GRPO (goal: <= 1.0), generation time and mean completion length.

The table is printed and written to benchmarks/RESULTS.md between this benchmark's markers.

Run:  python benchmarks/trainer_step.py            (about 3 minutes on 2 CPU cores)
      python benchmarks/trainer_step.py --quick    (smoke run, does not write RESULTS.md)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from _results import write_section  # noqa: E402  (benchmarks/ is the script's folder)
from trl_rere import ItemTrie, ReReConfig, ReReTrainer, rule_reward  # noqa: E402
from trl_rere.data import synthetic_catalog_dataset  # noqa: E402
from trl_rere.testing import tiny_causal_lm, train_tokenizer  # noqa: E402


RESULTS = REPO / "benchmarks" / "RESULTS.md"


class TurnTaking:
    """Lets several training threads run one optimizer step at a time, in strict rotation."""

    def __init__(self, names: list[str]):
        self.names = names
        self.turn = 0
        self.done: set[str] = set()
        self.cond = threading.Condition()

    def wait_for(self, name: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.names[self.turn] == name)

    def pass_on(self, name: str, finished: bool = False) -> None:
        with self.cond:
            if finished:
                self.done.add(name)
            if len(self.done) < len(self.names):
                k = self.turn
                for _ in self.names:
                    k = (k + 1) % len(self.names)
                    if self.names[k] not in self.done:
                        break
                self.turn = k
            self.cond.notify_all()


class StepTimer(TrainerCallback):
    def __init__(self, name: str, turns: TurnTaking):
        self.name, self.turns = name, turns
        self.step_times: list[float] = []
        self.cpu_times: list[float] = []
        self._t0 = self._c0 = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.turns.wait_for(self.name)

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        # process_time counts every thread of the process, but only the thread holding the turn is running
        self.step_times.append(time.perf_counter() - self._t0)
        self.cpu_times.append(time.process_time() - self._c0)
        self.turns.pass_on(self.name)
        self.turns.wait_for(self.name)

    def on_train_end(self, args, state, control, **kwargs):
        self.turns.pass_on(self.name, finished=True)


def time_generation(trainer, sink: list[float], lengths: list[float]) -> None:
    """Wraps the trainer's `_generate_single_turn` (stock for GRPO, ReRe's override for ReRe) to time it."""
    inner = trainer._generate_single_turn

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = inner(*args, **kwargs)
        sink.append(time.perf_counter() - t0)
        completion_ids = out[0]
        lengths.append(sum(len(c) for c in completion_ids) / max(len(completion_ids), 1))
        return out

    trainer._generate_single_turn = timed


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=256, help="catalog size")
    parser.add_argument("--prompts", type=int, default=4, help="unique prompts per step (P)")
    parser.add_argument("--G", type=int, default=16, help="completions per prompt (num_generations)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=30, help="measured steps per trainer")
    parser.add_argument("--warmup", type=int, default=2, help="steps dropped per trainer")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 2 steps, does not write")
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch RESULTS.md")
    opts = parser.parse_args()
    if opts.quick:
        opts.items, opts.prompts, opts.G, opts.hidden, opts.layers, opts.steps, opts.warmup = 32, 2, 4, 32, 2, 2, 1
        opts.no_write = True

    torch.set_num_threads(opts.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    catalog, dataset = synthetic_catalog_dataset(num_items=opts.items, num_users=max(64, opts.prompts * 32), seed=0)
    dataset = dataset.select_columns(["prompt", "target"])
    corpus = list(catalog.titles) + [f'"{t}"\n' for t in catalog.titles] + list(dataset["prompt"][:64])
    tokenizer = train_tokenizer(corpus, kind="bpe", vocab_size=opts.vocab)
    trie = ItemTrie.from_catalog(catalog, tokenizer)
    prompt_ids = tokenizer(list(dataset["prompt"][:64]), add_special_tokens=False)["input_ids"]
    prompt_lengths = [len(ids) for ids in prompt_ids]

    work = Path(tempfile.mkdtemp(prefix="trl-rere-trainer-step-"))
    model_dir = work / "model"
    model = tiny_causal_lm(tokenizer, hidden_size=opts.hidden, num_layers=opts.layers, num_heads=4, seed=0)
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    total_steps = opts.steps + opts.warmup
    common = dict(
        per_device_train_batch_size=opts.prompts * opts.G,
        num_generations=opts.G,
        max_completion_length=trie.max_length,
        max_steps=total_steps,
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        warmup_steps=0,
        beta=1e-3,
        sync_ref_model=False,
        loss_type="grpo",
        max_grad_norm=0.3,
        temperature=1.0,
        gradient_checkpointing=False,
        bf16=False,
        use_cpu=True,
        logging_steps=total_steps,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    names = ["ReRe (beam)", "GRPO (sampling)"]
    turns = TurnTaking(names)
    timers = {n: StepTimer(n, turns) for n in names}
    gen_times: dict[str, list[float]] = {n: [] for n in names}
    gen_lengths: dict[str, list[float]] = {n: [] for n in names}

    rere = ReReTrainer(
        model=str(model_dir),
        args=ReReConfig(output_dir=str(work / "rere"), sampling_strategy="beam", warmup_ratio=0.0, **common),
        train_dataset=dataset,
        catalog=catalog,
        reward_funcs=[rule_reward],
        processing_class=tokenizer,
        callbacks=[timers[names[0]]],
    )
    grpo = GRPOTrainer(
        model=str(model_dir),
        args=GRPOConfig(output_dir=str(work / "grpo"), **common),
        train_dataset=dataset,
        reward_funcs=[rule_reward],
        processing_class=tokenizer,
        callbacks=[timers[names[1]]],
    )
    for name, trainer in zip(names, (rere, grpo)):
        time_generation(trainer, gen_times[name], gen_lengths[name])

    errors: list[BaseException] = []

    def run(name, trainer):
        try:
            trainer.train()
        except BaseException as e:  # noqa: BLE001 - reported below; the other thread must not wait forever
            errors.append(e)
            turns.pass_on(name, finished=True)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(n, t), name=n) for n, t in zip(names, (rere, grpo))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)
    if errors:
        raise errors[0]

    rows = {}
    for name in names:
        steps = timers[name].step_times[opts.warmup :]
        gens = gen_times[name][opts.warmup :]
        q1, med, q3 = quartiles(steps)
        rows[name] = {
            "median": med,
            "q1": q1,
            "q3": q3,
            "gen": statistics.median(gens),
            "len": statistics.mean(gen_lengths[name][opts.warmup :]),
            "cpu": statistics.median(timers[name].cpu_times[opts.warmup :]),
            "n": len(steps),
        }
    ratio = rows[names[0]]["median"] / rows[names[1]]["median"]
    gen_ratio = rows[names[0]]["gen"] / rows[names[1]]["gen"]
    cpu_ratio = rows[names[0]]["cpu"] / rows[names[1]]["cpu"]
    # Steps alternate, so step i of each trainer ran under about the same background load: the per-pair ratio is less
    # noisy than the ratio of medians.
    rere_steps, grpo_steps = (timers[n].step_times[opts.warmup :] for n in names)
    pairs = [a / b for a, b in zip(rere_steps, grpo_steps)]
    pq1, pmed, pq3 = quartiles(pairs)

    lines = [
        "## Training step time: ReReTrainer vs stock GRPOTrainer (`benchmarks/trainer_step.py`)",
        "",
        "| trainer | median step (s) | IQR (s) | median CPU time per step (s) | median generation (s) | "
        "rest of step (s) | mean completion tokens | steps measured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        r = rows[name]
        lines.append(
            f"| {name} | {r['median']:.3f} | {r['q1']:.3f}-{r['q3']:.3f} | {r['cpu']:.3f} | {r['gen']:.3f} | "
            f"{r['median'] - r['gen']:.3f} | {r['len']:.1f} | {r['n']} |"
        )
    goal = "met" if ratio <= 1.0 else "not met"
    lines += [
        "",
        f"**Ratio ReRe / GRPO (median step time): {ratio:.2f}** (goal <= 1.0: {goal}). Median of the "
        f"ratios of alternating step pairs: {pmed:.2f} (IQR {pq1:.2f}-{pq3:.2f}); CPU time per step: {cpu_ratio:.2f}; "
        f"generation alone: {gen_ratio:.2f}.",
        "",
        "Settings:",
        f"- Model: random Qwen2, hidden {opts.hidden}, {opts.layers} layers, 4 heads, MLP {2 * opts.hidden}, tied "
        f"embeddings, {n_params / 1e6:.2f}M parameters, fp32; byte-level BPE vocabulary of {len(tokenizer)} tokens "
        f"trained on the catalog titles and prompts.",
        f"- Data: `synthetic_catalog_dataset(num_items={opts.items})` with the authors' prompt template (prompt "
        f"{min(prompt_lengths)}-{max(prompt_lengths)} tokens); reward `rule_reward` for both.",
        f"- Batch: {opts.prompts} prompts x G={opts.G} = {opts.prompts * opts.G} completions per step, one "
        f"optimizer step per generation, max completion length {trie.max_length} (= the trie's longest title "
        f"completion, EOS included); beta 1e-3 (reference forward pass), loss 'grpo', lr 1e-5, grad clip 0.3.",
        "- ReRe: one constrained beam search of G beams per prompt (length_penalty 0; each prompt encoded once, its KV cache repeated for the G beams). GRPO: TRL's transformers "
        "sampling (temperature 1.0), G rows per prompt, unconstrained. A random model rarely samples EOS, so GRPO "
        "completions run to the length limit while ReRe's are real titles (see 'mean completion tokens'); the loss "
        "runs over the batch padded to its longest completion, about the same width for both, so the "
        "forward/backward passes cost about the same and the difference is in generation.",
        f"- Timing: the trainers take strict turns step by step in one process ({opts.warmup} warm-up steps each "
        f"dropped, {opts.steps} measured each); a step is `on_step_begin` -> `on_step_end`, generation is TRL's "
        f"`_generate_single_turn`. torch {torch.__version__} with {opts.threads} threads, transformers "
        f"{transformers.__version__}, trl {trl.__version__}, {platform.machine()}, {os.cpu_count()} CPU cores "
        f"shared with other jobs (load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}); "
        f"{wall:.0f} s wall for both trainers.",
    ]
    section = "\n".join(lines)
    print(section)
    if not opts.no_write:
        write_section("trainer_step", section)
        print(f"\nwritten to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
