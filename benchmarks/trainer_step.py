"""Time per training step: `ReReTrainer` (trie-constrained beam search) vs stock `trl.GRPOTrainer` (sampling).

Both trainers get the same tiny model (a random Qwen2, hidden 128, 4 layers, 4 heads) over Qwen2's real tokenizer
and vocabulary (`shared/tokenizers/qwen2`, 151,646 tokens), the same data (real Toys-and-Games catalog titles, the
authors' prompt template over random histories of them, `prompt` / `target` columns), the same batch (P prompts x G
completions), the same reward function (`trl_rere.rule_reward`), the same optimisation settings (lr, beta with a
reference model, `loss_type="grpo"`, max grad norm, no gradient checkpointing, fp32) and the same completion budget: GRPO samples up to
`max_completion_length = trie.max_length` new tokens, the longest title completion the beam search can produce.

What differs is exactly what ReRe changes: ReRe runs one constrained beam search of G beams per unique prompt
(`sampling_strategy="beam"`), GRPO samples G completions per prompt without constraint (TRL's transformers path).

Measurement: the two trainers run in two threads that take strict turns, one optimizer step each (a step is timed
from `on_step_begin` to `on_step_end`: generation, rewards, reference log-probs, forward/backward and the optimizer
step); only the thread holding the turn runs at all, so the two never compete for the cores and both see the same
background load. The first `--warmup` steps of each are dropped. Generation time is measured by wrapping each
trainer's `rollout_func` where it sets one (TRL's public hook) and its `_generate_single_turn` otherwise. Report: median and interquartile range of the step times, the ratio of medians
ReRe / GRPO (goal: <= 1.0), generation time and mean completion length.

The table is printed and written to benchmarks/trainer_step.md between this benchmark's markers.

Run:  python benchmarks/trainer_step.py            (about 3 minutes on 2 CPU cores)
      python benchmarks/trainer_step.py --quick    (smoke run, does not write trainer_step.md)
"""

from __future__ import annotations

import argparse
import os
import platform
import random
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

from _cpu import cpu_compact_logprobs, keep_freed_memory, lean_cpu_logprob_tiles  # noqa: E402
from _results import BENCHMARKS, write_section  # noqa: E402  (benchmarks/ is the script's folder)
from datasets import Dataset  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from trl_rere import ItemCatalog, ItemTrie, ReReConfig, ReReTrainer, rule_reward  # noqa: E402
from trl_rere.data import DEFAULT_INSTRUCTIONS, build_prompt, instruction_index  # noqa: E402
from trl_rere.testing import tiny_causal_lm  # noqa: E402
from trl_rere.trie import DEFAULT_PROMPT_SUFFIX, tokenize_completions  # noqa: E402


PAGE = BENCHMARKS / "trainer_step.md"
QWEN2_TOKENIZER = REPO.parent / "shared" / "tokenizers" / "qwen2"
TOYS_INFO = REPO.parent / "shared" / "data" / "amazon" / "info" / "Toys_and_Games_5_2016-10-2018-11.txt"


def real_title_dataset(
    tokenizer, num_items: int, max_tokens: int, num_users: int, seed: int = 0
) -> tuple[ItemCatalog, Dataset, int]:
    """`num_items` real Toys titles whose completion (EOS included) is at most `max_tokens` Qwen2 tokens, and
    `num_users` rows of the authors' prompt over a history of 2-6 of them with a random target among them.

    The length cap keeps the stock GRPO side affordable on CPU: a random model rarely samples EOS, so its completions
    run to `max_completion_length` (the trie's longest title) and the loss is taken over all of them. Returns the
    catalog, the dataset and how many titles were eligible."""
    full = ItemCatalog.from_info_file(TOYS_INFO)
    lengths = [len(ids) + 1 for ids in tokenize_completions([f'"{t}"\n' for t in full.titles], tokenizer,
                                                             DEFAULT_PROMPT_SUFFIX)]
    eligible = [t for t, n in zip(full.titles, lengths) if n <= max_tokens]
    if len(eligible) < num_items:
        raise ValueError(f"{TOYS_INFO}: only {len(eligible)} titles fit in {max_tokens} tokens, {num_items} asked")
    rng = random.Random(seed)
    titles = rng.sample(eligible, num_items)
    rows = {"prompt": [], "target": []}
    for u in range(num_users):
        history = rng.sample(titles, rng.randint(2, 6))
        instruction = DEFAULT_INSTRUCTIONS[instruction_index(seed, u)]
        rows["prompt"].append(build_prompt(history, "Toys_and_Games", instruction))
        rows["target"].append(rng.choice(titles))
    return ItemCatalog.from_titles(titles), Dataset.from_dict(rows), len(eligible)


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


def time_generation(trainer, sink: list[float], lengths: list[float]) -> str:
    """Wraps the trainer's generation to time it: TRL's public `rollout_func` where the trainer sets one, otherwise
    `_generate_single_turn` (stock for GRPO, or a trainer's override). Returns which one it wrapped."""
    use_rollout = getattr(trainer, "rollout_func", None) is not None
    inner = trainer.rollout_func if use_rollout else trainer._generate_single_turn

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = inner(*args, **kwargs)
        sink.append(time.perf_counter() - t0)
        # rollout_func returns a dict, _generate_single_turn a tuple starting with the completion ids
        completion_ids = out["completion_ids"] if use_rollout else out[0]
        lengths.append(sum(len(c) for c in completion_ids) / max(len(completion_ids), 1))
        return out

    if use_rollout:
        trainer.rollout_func = timed
    else:
        trainer._generate_single_turn = timed
    return "rollout_func" if use_rollout else "_generate_single_turn"


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
    parser.add_argument("--max-title-tokens", type=int, default=16,
                        help="only catalog titles whose completion is at most this many Qwen2 tokens (EOS included)")
    parser.add_argument("--steps", type=int, default=30, help="measured steps per trainer")
    parser.add_argument("--warmup", type=int, default=2, help="steps dropped per trainer")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 2 steps, does not write")
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch trainer_step.md")
    opts = parser.parse_args()
    if opts.quick:
        opts.items, opts.prompts, opts.G, opts.hidden, opts.layers, opts.steps, opts.warmup = 32, 2, 4, 32, 2, 2, 1
        opts.no_write = True

    torch.set_num_threads(opts.threads)
    # With Qwen2's 151,646-token vocabulary the (tokens x vocabulary) work of TRL's CPU log-prob head and glibc's page
    # faults on every fresh tensor of that size would dominate both trainers' steps; these change no value
    # (tests/test_benchmark_shims.py) and are what the CPU reproduction runs with.
    malloc_kept = keep_freed_memory()
    cpu_compact_logprobs()
    lean_cpu_logprob_tiles()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    tokenizer = AutoTokenizer.from_pretrained(QWEN2_TOKENIZER)
    catalog, dataset, eligible = real_title_dataset(
        tokenizer, opts.items, opts.max_title_tokens, num_users=max(64, opts.prompts * 32), seed=0
    )
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
        args=ReReConfig(output_dir=str(work / "rere"), sampling_strategy="beam", **common),
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
    wrapped = {}
    for name, trainer in zip(names, (rere, grpo)):
        wrapped[name] = time_generation(trainer, gen_times[name], gen_lengths[name])

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
        f"embeddings, {n_params / 1e6:.2f}M parameters (most of them the {len(tokenizer):,}-token embedding), fp32; "
        f"Qwen2's real tokenizer.",
        f"- Data: {opts.items} real Toys-and-Games titles, drawn at random from the {eligible:,} of the catalog's "
        f"11,198 whose completion is at most {opts.max_title_tokens} Qwen2 tokens (EOS included); prompts: the "
        f"authors' template over 2-6 random catalog titles ({min(prompt_lengths)}-{max(prompt_lengths)} tokens), "
        f"random targets; reward `rule_reward` for both.",
        f"- Batch: {opts.prompts} prompts x G={opts.G} = {opts.prompts * opts.G} completions per step, one "
        f"optimizer step per generation, max completion length {trie.max_length} (= the trie's longest title "
        f"completion, EOS included); beta 1e-3 (reference forward pass), loss 'grpo', lr 1e-5, grad clip 0.3.",
        "- ReRe: one constrained beam search of G beams per prompt (length_penalty 0; each prompt encoded once, its "
        "KV cache repeated for the G beams). GRPO: TRL's transformers sampling (temperature 1.0), G rows per prompt, "
        "unconstrained. A random model rarely samples EOS, so GRPO completions run to the length limit while ReRe's are real titles (see 'mean completion tokens'); the loss "
        "runs over the batch padded to its longest completion, about the same width for both, so the "
        "forward/backward passes cost about the same and the difference is in generation.",
        f"- Timing: the trainers take strict turns step by step in one process ({opts.warmup} warm-up steps each "
        f"dropped, {opts.steps} measured each); a step is `on_step_begin` -> `on_step_end`, generation is the "
        f"trainer's `{wrapped[names[0]]}` for ReRe and `{wrapped[names[1]]}` for GRPO. torch {torch.__version__} "
        f"with {opts.threads} threads, transformers "
        f"{transformers.__version__}, trl {trl.__version__}, {platform.machine()}, {os.cpu_count()} CPU cores "
        f"shared with other jobs (load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}); "
        f"{wall:.0f} s wall for both trainers. CPU settings that change no value (`benchmarks/_cpu.py`) for both: "
        f"TRL's fused log-prob head scores only completion positions and folds its tiles in place"
        f"{', and glibc malloc keeps freed memory' if malloc_kept else ''}.",
    ]
    section = "\n".join(lines)
    print(section)
    if not opts.no_write:
        write_section(PAGE, "trainer_step", section)
        print(f"\nwritten to {PAGE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
