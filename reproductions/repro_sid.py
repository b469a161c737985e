"""Reproduction of ReRe over semantic IDs (MiniOneRec's setting) on Amazon Industrial_and_Scientific.

MiniOneRec (github.com/AkaliKong/MiniOneRec) trains ReRe's RL over 3-level semantic IDs and reports, on Industrial,
HR@10 0.1586 / NDCG@10 0.1167 (SASRec 0.0806, TIGER 0.0908 NDCG@10) with a pretrained Qwen2.5 model; the numbers are
here for scale only: this script trains a small model from scratch.

Pipeline (every RL row starts from the same SFT checkpoint and gets the same budget: prompts, steps, G, beta, lr grid):

  data       MiniOneRec's files (`load_amazon(..., item_format="sid")`): prompt "### User Input: \\nThe user has
             interacted with items {sid_1}, ..., {sid_n} in chronological order. Can you predict ...
             \\n\\n### Response:\\n",
             full history (up to 10 items), completion "{sid}\\n" + EOS
  dev        `--dev_users` seeded random users, whose **valid** event (history -> valid target) is held out of
             training: their completion loss early-stops SFT and their ranking chooses each row's RL learning rate.
             Their test events are reported like everyone's, but tuning never sees a test target.
  tokenizer  byte-level BPE trained on the prompt wording, plus one token per SID code (`add_sid_tokens`), or a
             pretrained tokenizer (`--tokenizer path`) with the codes added
  model      a small Qwen2-style causal LM initialised from scratch with the codes in its vocabulary
  SFT        completion-only cross-entropy (TRL SFTTrainer's objective, `_common.lean_sft`) on every
             (history prefix -> next item) pair of the valid split's sequences (the dev users' last pair excepted),
             at most `--sft_epochs`, keeping the epoch with the lowest dev loss
  RL pool    `--rl_pool sft` (main table, the authors' recipe): the SFT pairs themselves; `--rl_pool heldout` (second
             table): a seeded random `--heldout_frac` of the pairs, held out of SFT
  rows       1. SFT only
             1b. control: the SFT loss on the RL rows' prompts with their optimiser budget
             2. GRPO with trie-constrained temperature sampling, rule reward
             3. ReRe sampling (constrained beam search, G distinct items), rule reward only
             4. ReRe: beam search, rule + ranking reward (the method)
  RL         ReReTrainer, item_format="sid", G=16, beta 1e-3, plain k3 KL (ReReConfig's default), `--rl_epochs`
             passes over the pool (>= 1), one lr per row chosen from `--lr_grid` by dev NDCG@10 (seed `--tune_seed`);
             the chosen lr is then run with every seed of `--seeds`; the dev users are ranked `--dev_points` times
             during each run (the dev curve, reported beside the SFT checkpoint's dev score; not counted as training)
  eval       trie-constrained beam search, 50 beams, on all 4,533 test users (`--eval_users 0`), HR@K / NDCG@K;
             per-user paired standard errors of each row's difference to SFT, means and spread over seeds

Rows and seeds can run in separate invocations (`--rows rere --seeds 1`): every (row, lr, seed, evaluation) result is
a JSON file under `--work_dir`, reused when present, and the tables merge whatever results of this configuration are
there (`--report_only` merges without computing). The main table goes to reproductions/sid.md, section `repro_sid`
(`repro_sid_heldout` for the held-out pool); `--quick` runs a tiny configuration and writes nothing there.

Run:  python reproductions/repro_sid.py --device cuda                     (main table: lr tuning, then 3 seeds per row)
      python reproductions/repro_sid.py --device cuda --rows sft,rere --seeds 0   (part of it; rerun others later)
      python reproductions/repro_sid.py --device cuda --rl_pool heldout     (the second table)
      python reproductions/repro_sid.py --quick                             (a minute on a CPU; sid.md untouched)
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: trl_rere, benchmarks, reproductions

import torch  # noqa: E402

from benchmarks._results import write_section  # noqa: E402
# _common sets up the environment for the package; grouped by stage
from reproductions._common import CATEGORY, REPO, WORK_DIR, config_key, hardware, install_cpu_shims, log  # noqa: E402
from reproductions._common import cached_sft, encode_examples, lean_sft, new_sft_model, save_sft  # noqa: E402
from reproductions._common import ROWS as ALL_ROWS  # noqa: E402
from reproductions._common import quiet_torch, rl_curve, run_eval, split_rl_pool  # noqa: E402
from reproductions._common import mean_se, metric_cells, paired_difference, per_user_ndcg  # noqa: E402
from trl_rere.data import SID_PROMPT_TEMPLATE, load_amazon, sid_prefix_pairs  # noqa: E402
from trl_rere.evaluation import DEFAULT_KS, RankingEvalCallback  # noqa: E402
from trl_rere.sid_tokens import add_sid_tokens  # noqa: E402
from trl_rere.testing import train_tokenizer  # noqa: E402
from trl_rere.trie import ItemTrie  # noqa: E402


PAGE = REPO / "reproductions" / "sid.md"
PUBLISHED = ("MiniOneRec's published Industrial numbers (pretrained Qwen2.5, 8 GPUs; for scale, not comparable to a "
             "model trained from scratch here): MiniOneRec HR@10 0.1586, NDCG@10 0.1167; SASRec NDCG@10 0.0806, "
             "TIGER NDCG@10 0.0908.")

# name -> (label, sampling_strategy, rewards): repro_industrial's rows 1-4, over SIDs
ROWS = {name: row for name, row in ALL_ROWS.items() if name != "dynamic"}
GOALS = {"sft": "above SFT", "sft_ce": "above the supervised control", "grpo_sample": "above GRPO with sampling",
         "beam_rule": "ranking reward at least as good as rule only"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"), help="folder with (minionerec/)index")
    p.add_argument("--work_dir", default=str(WORK_DIR / "sid"))
    p.add_argument("--rows", default=",".join(ROWS), help=f"rows to compute, comma list of {','.join(ROWS)}")
    p.add_argument("--seeds", default="0,1,2", help="RL seeds to compute (comma list); the SFT checkpoint is shared")
    p.add_argument("--report_only", action="store_true", help="compute nothing; merge the cached results")
    p.add_argument("--sft_seed", type=int, default=0)
    p.add_argument("--max_history", type=int, default=10)
    p.add_argument("--dev_users", type=int, default=300, help="users whose valid event is the dev set")
    p.add_argument("--tokenizer", default="bpe", help="'bpe' (trained on the prompt wording) or a tokenizer folder")
    p.add_argument("--vocab_size", type=int, default=512, help="BPE vocabulary before the SID codes")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=512)
    p.add_argument("--sft_epochs", type=float, default=10.0, help="at most; the epoch with the lowest dev loss is kept")
    p.add_argument("--sft_lr", type=float, default=2e-3)
    p.add_argument("--sft_batch", type=int, default=64)
    p.add_argument("--rl_pool", choices=("sft", "heldout"), default="sft")
    p.add_argument("--heldout_frac", type=float, default=0.15)
    p.add_argument("--rl_epochs", type=float, default=1.0, help="passes over the RL pool")
    p.add_argument("--rl_steps", type=int, default=None, help="overrides --rl_epochs (e.g. to time a few steps)")
    p.add_argument("--prompts_per_step", type=int, default=64, help="MiniOneRec: 64 x 2 x 8 completions / G=16")
    p.add_argument("--G", type=int, default=16)
    p.add_argument("--lr_grid", default="1e-5,3e-5,1e-4", help="RL (and control) learning rates tried on dev users")
    p.add_argument("--tune_seed", type=int, default=0)
    p.add_argument("--beta", type=float, default=1e-3)
    p.add_argument("--warmup_ratio", type=float, default=0.03)
    p.add_argument("--eval_users", type=int, default=0, help="test users reported (0: all 4,533)")
    p.add_argument("--eval_seed", type=int, default=1234)
    p.add_argument("--eval_beams", type=int, default=50)
    p.add_argument("--eval_batch", type=int, default=10)
    p.add_argument("--test_every_lr", action="store_true",
                   help="also rank the reported users with every grid lr of the tuning seed (a diagnostic of the lr "
                   "choice: how dev and test agree; never used to choose)")
    p.add_argument("--dev_points", type=int, default=4, help="dev evaluations during each RL run (the dev curve)")
    p.add_argument("--shared_prompt", choices=("on", "off"), default="on",
                   help="ReReConfig.shared_prompt_logprobs and shared_prompt_cache: each group's prompt computed once "
                   "when scoring, and the CPU beam cache (same values up to float rounding)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny sanity run; sid.md untouched")
    p.add_argument("--fresh", action="store_true", help="ignore cached results")
    p.add_argument("--no_results", action="store_true", help="do not write reproductions/sid.md")
    a = p.parse_args(argv)
    if a.dev_points < 1:
        p.error(f"--dev_points must be at least 1, got {a.dev_points}")
    if a.quick:
        a.work_dir = str(Path(a.work_dir) / "quick")
        a.sft_max_pairs, a.sft_epochs, a.sft_batch = 256, 1.0, 32
        a.rl_steps, a.prompts_per_step, a.G, a.lr_grid = 2, 2, 4, "1e-4,1e-3"
        a.seeds = "0" if a.seeds == p.get_default("seeds") else a.seeds
        a.eval_users, a.eval_beams, a.dev_users = 12, 10, 8
        a.hidden, a.layers, a.heads, a.intermediate = 32, 2, 2, 64
        a.no_results = True
    else:
        a.sft_max_pairs = None
    return a


# -- data -------------------------------------------------------------------------------------------------------------
def split_dev(valid, n_dev: int, seed: int):
    """(SFT pairs, dev rows): every distinct prefix pair of the valid rows but the dev events, and the dev events.

    A dev event is the last valid row (history -> target) of each of `n_dev` seeded random users: their latest valid
    event, later than any pair trained on for that user and earlier than the user's test target. MiniOneRec's files
    hold several overlapping rows per user (sliding windows over one sequence), so the dev event is chosen per user,
    not per row: an earlier row of the user is a prefix of its later rows, and holding one out would leave it in the
    SFT pairs through them. Every pair equal to a dev event (same user, history and target) is left out."""
    last_row = {u: r for r, u in enumerate(valid["user_id"])}
    users = sorted(last_row)
    random.Random(seed).shuffle(users)
    dev = valid.select(sorted(last_row[u] for u in users[:n_dev]))
    pairs = sid_prefix_pairs(valid)

    def events(rows):
        return [(u, tuple(h), t) for u, h, t in zip(rows["user_id"], rows["history_titles"], rows["target"])]

    held = set(events(dev))
    return pairs.select([i for i, e in enumerate(events(pairs)) if e not in held]), dev


def build_tokenizer(a, catalog, work: Path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cfg = {"tok": a.tokenizer, "vocab": a.vocab_size, "codes": config_key(sorted(catalog.titles))}
    tok_dir = work / f"tokenizer-{config_key(cfg)}"
    if (tok_dir / "tokenizer.json").exists() and not a.fresh:
        return PreTrainedTokenizerFast.from_pretrained(tok_dir), tok_dir.name
    if a.tokenizer == "bpe":
        wording = SID_PROMPT_TEMPLATE.replace("{history}", "")
        tok = train_tokenizer([wording] * 4 + ["0123456789, "], kind="bpe", vocab_size=a.vocab_size)
    else:
        tok = AutoTokenizer.from_pretrained(a.tokenizer)
        tok.pad_token = tok.pad_token or tok.eos_token
        tok.padding_side = "left"
    added = add_sid_tokens(tok, catalog)  # before the model is built: the codes get their own random embeddings
    tok.save_pretrained(tok_dir)
    log(f"tokenizer: {len(tok)} tokens ({len(added)} SID codes added)")
    return tok, tok_dir.name


# -- rows -------------------------------------------------------------------------------------------------------------
def rl_budget(a, n_pool: int) -> int:
    return a.rl_steps if a.rl_steps else math.ceil(a.rl_epochs * n_pool / a.prompts_per_step)


class TimedRankingEval(RankingEvalCallback):
    """RankingEvalCallback that adds up its own time, so that the dev curve does not count as RL training time."""

    seconds = 0.0

    def evaluate(self, model, step=None):
        t0 = time.time()
        try:
            return super().evaluate(model, step)
        finally:
            self.seconds += time.time() - t0


def train_row(name, lr, seed, a, sft_dir, tok, catalog, rl_pool, steps, dev):
    """Trains row `name` from the SFT checkpoint; returns (model, record of the run)."""
    from transformers import AutoModelForCausalLM

    from trl_rere import ReReConfig, ReReTrainer

    _, strategy, rewards = ROWS[name]
    t0 = time.time()
    if strategy == "ce":
        model = AutoModelForCausalLM.from_pretrained(sft_dir, dtype=torch.float32).to(a.device)
        picks = random.Random(seed).sample(range(len(rl_pool)), min(len(rl_pool), steps * a.prompts_per_step))
        lean_sft(model, tok, encode_examples(tok, rl_pool.select(picks), "sid"), epochs=1.0, lr=lr,
                 batch_size=a.prompts_per_step, seed=seed, warmup=a.warmup_ratio, weight_decay=0.0,
                 max_grad_norm=ReReConfig.max_grad_norm, log_every=max(1, steps // 4))
        return model, {"train_s": time.time() - t0}
    args = ReReConfig(
        output_dir=str(Path(a.work_dir) / "rl-tmp"), item_format="sid",
        per_device_train_batch_size=a.G * a.prompts_per_step, num_generations=a.G, max_steps=steps, learning_rate=lr,
        beta=a.beta, warmup_steps=a.warmup_ratio,  # below 1: a fraction of the steps
        sampling_strategy=strategy, rewards=rewards, gradient_checkpointing=False, bf16=False, report_to=[],
        save_strategy="no", logging_steps=1, use_cpu=a.device == "cpu", seed=seed, data_seed=seed,
        disable_tqdm=True, ranking_metrics_ks=[1, 5, 10], dataloader_num_workers=0,
        shared_prompt_logprobs=a.shared_prompt == "on", shared_prompt_cache=a.shared_prompt == "on",
    )
    trainer = ReReTrainer(model=str(sft_dir), args=args, train_dataset=rl_pool.select_columns(["prompt", "target"]),
                          processing_class=tok, catalog=catalog)
    # The dev curve: whether the budget reached the point where dev ranking stops improving (the stopping
    # rule). Its evaluations are excluded from train_s.
    dev_eval = TimedRankingEval(dev, trainer.trie, tok, num_beams=a.eval_beams, ks=DEFAULT_KS,
                                eval_steps=max(1, steps // a.dev_points), batch_size=a.eval_batch).attach(trainer)
    trainer.train()
    train_s = time.time() - t0
    curve = rl_curve(trainer)
    curve["dev"] = [[h["step"], round(h["eval_NDCG@10"], 4)] for h in trainer.state.log_history
                    if "eval_NDCG@10" in h]
    train_s -= dev_eval.seconds
    log(f"  RL {name} lr {lr:g} seed {seed}: {trainer.state.global_step} steps in {train_s:.0f}s "
        f"({train_s / max(1, trainer.state.global_step):.2f} s/step)")
    return trainer.model, {"train_s": train_s, "curve": curve, "steps": trainer.state.global_step}


def run_name(name: str, lr, seed, a, steps: int) -> str:
    """The file-name stem of one (row, lr, seed) run: its settings hashed, so other settings never reuse it."""
    if ROWS[name][1] is None:
        return "sft"
    cfg = {"rl": name, "steps": steps, "P": a.prompts_per_step, "G": a.G, "lr": lr, "beta": a.beta,
           "warmup": a.warmup_ratio, "seed": seed, "pool": a.rl_pool}
    return f"{name}-{config_key(cfg)}"


def trained_model(name, lr, seed, a, ctx):
    """(model, training record) of one run: the SFT checkpoint for row 1, otherwise the run's checkpoint if it was
    trained before (tuning and reporting evaluate the same run on two user sets), or a new training run."""
    from transformers import AutoModelForCausalLM

    if ROWS[name][1] is None:
        return AutoModelForCausalLM.from_pretrained(ctx["sft_dir"], dtype=torch.float32).to(a.device), {"train_s": 0.0}
    model_dir = ctx["sft_dir"] / f"{run_name(name, lr, seed, a, ctx['steps'])}-model"
    record = model_dir / "run.json"
    if record.exists() and (not a.fresh or model_dir in ctx["trained"]):
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(a.device), json.loads(
            record.read_text())
    model, extra = train_row(name, lr, seed, a, ctx["sft_dir"], ctx["tok"], ctx["catalog"], ctx["rl_pool"],
                             ctx["steps"], ctx["dev"])
    model.save_pretrained(model_dir)
    record.write_text(json.dumps(extra))
    ctx["trained"].add(model_dir)
    return model, extra


def get_result(name, lr, seed, tag, data, compute, a, ctx) -> dict | None:
    """The cached result of (row, lr, seed) on the evaluation `tag`, computing it if allowed."""
    path = ctx["sft_dir"] / f"{run_name(name, lr, seed, a, ctx['steps'])}-{tag}.json"
    if path.exists() and not a.fresh:
        return json.loads(path.read_text())
    if not compute:
        return None
    log(f"{ROWS[name][0]} lr {lr} seed {seed} on {tag}: start")
    model, extra = trained_model(name, lr, seed, a, ctx)
    return run_eval(model, ctx["tok"], data, ctx["trie"], a, path, {"row": name, "lr": lr, "seed": seed, **extra})


def choose_lr(name, grid, a, ctx, compute) -> tuple[float | None, dict]:
    """The grid's lr with the best dev NDCG@10 for row `name` (seed `--tune_seed`), and every dev score seen."""
    if ROWS[name][1] is None:
        return None, {}
    scores = {}
    for lr in grid:
        res = get_result(name, lr, a.tune_seed, ctx["dev_tag"], ctx["dev"], compute, a, ctx)
        if res is not None:
            scores[lr] = res["metrics"]["NDCG@10"]
    if len(scores) < len(grid):
        return None, scores  # tuning incomplete: the row cannot be reported yet
    return max(grid, key=lambda lr: (scores[lr], -lr)), scores


def popularity_thirds(target_counts: list[int]) -> tuple[int, int]:
    """(low, high): a test user's target is rare below `low` SFT-target occurrences, popular from `high` on."""
    ordered = sorted(target_counts)
    return ordered[len(ordered) // 3], ordered[2 * len(ordered) // 3]


def popularity_breakdown(results, n_users: int, target_counts: list[int]) -> list[str]:
    """NDCG@10 of SFT and each row's paired difference to it, for the test users split into thirds by how often their
    target is an SFT target: whether RL gains or loses on the items SFT saw most (its popularity prior) or least."""
    if "sft" not in results or len(set(target_counts)) < 3:
        return []
    low, high = popularity_thirds(target_counts)
    bins = [("rare", lambda c: c < low), ("middle", lambda c: low <= c < high), ("popular", lambda c: c >= high)]
    users = [[u for u in range(n_users) if keep(target_counts[u])] for _, keep in bins]
    base = per_user_ndcg(results["sft"], n_users)
    names = [f"{label} (target an SFT target {rule}; {len(us)} users)" for (label, _), us, rule in
             zip(bins, users, (f"< {low} times", f"{low}-{high - 1} times", f">= {high} times"))]
    lines = ["| row | " + " | ".join(names) + " |", "|" + "---|" * (len(bins) + 1),
             "| 1. SFT only (NDCG@10) | " + " | ".join(f"{statistics.fmean(base[u] for u in us):.4f}" if us else "—"
                                                     for us in users) + " |"]
    for name, runs in results.items():
        if name == "sft":
            continue
        per_user = per_user_ndcg(runs, n_users)
        cells = []
        for us in users:
            if len(us) < 2:
                cells.append("—")
                continue
            dm, dse = paired_difference([per_user[u] for u in us], [base[u] for u in us])
            cells.append(f"{dm:+.4f} (SE {dse:.4f})")
        lines.append(f"| {ROWS[name][0]} (Δ vs SFT) | " + " | ".join(cells) + " |")
    return lines


# -- report -----------------------------------------------------------------------------------------------------------
def render(results, chosen, dev_scores, a, info, diagnostic=None) -> str:
    n_users = info["n_users"]
    ks = DEFAULT_KS
    head = ("| row | lr | seeds | " + " | ".join(f"HR@{k}" for k in ks) + " | " + " | ".join(f"NDCG@{k}" for k in ks)
            + " | NDCG@10 ± SE | Δ NDCG@10 vs SFT (rel.) | paired SE of Δ | RL train s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    base = per_user_ndcg(results["sft"], n_users) if "sft" in results else None
    for name, runs in results.items():
        cells = metric_cells(runs, [f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks])
        per_user = per_user_ndcg(runs, n_users)
        m, se = mean_se(per_user)
        delta = dse = "—"
        if base is not None and name != "sft":
            dm, dse_v = paired_difference(per_user, base)
            ref = statistics.fmean(base)
            delta, dse = f"{dm:+.4f} ({100 * dm / ref:+.1f}%)" if ref > 0 else f"{dm:+.4f}", f"{dse_v:.4f}"
        seeds = ",".join(str(r["seed"]) for r in runs) if runs[0]["seed"] is not None else "—"
        lr = f"{chosen[name]:g}" if chosen.get(name) is not None else "—"
        lines.append(f"| {ROWS[name][0]} | {lr} | {seeds} | " + " | ".join(cells) + f" | {m:.4f} ± {se:.4f} | {delta} "
                     f"| {dse} | {statistics.fmean(r['train_s'] for r in runs):.0f} |")
    goals = []
    if "rere" in results:
        mine = per_user_ndcg(results["rere"], n_users)
        for other, goal in GOALS.items():
            if other in results:
                theirs = per_user_ndcg(results[other], n_users)
                dm, dse_v = paired_difference(mine, theirs)
                verdict = "met" if dm > 0 else "not met"
                if abs(dm) < 2 * dse_v:
                    verdict += " (within 2 paired SE: not significant)"
                goals.append(f"- vs {ROWS[other][0]}: {dm:+.4f} NDCG@10 (paired SE {dse_v:.4f}); {goal}: {verdict}")
    tuning = [f"- {ROWS[n][0]}: " + ", ".join(f"lr {lr:g}: {s:.4f}" for lr, s in sorted(sc.items()))
              for n, sc in dev_scores.items() if sc]
    if diagnostic and base is not None:
        tuning.append("")
        tuning.append(f"Diagnostic (`--test_every_lr`, never used to choose): the same runs (seed {a.tune_seed}) on the "
                      f"{n_users} reported users, NDCG@10 and its paired difference to SFT:")
        for name, by_lr in diagnostic.items():
            cells = []
            for lr, run in sorted(by_lr.items()):
                dm, dse_v = paired_difference(per_user_ndcg([run], n_users), base)
                cells.append(f"lr {lr:g}: {run['metrics']['NDCG@10']:.4f} ({dm:+.4f}, SE {dse_v:.4f})")
            tuning.append(f"- {ROWS[name][0]}: " + ", ".join(cells))
    curves = []
    for name, runs in results.items():
        for r in runs:
            c = r.get("curve")
            if c and c["reward"]:
                q = max(1, len(c["reward"]) // 4)
                tig = c["rere/target_in_group"]
                dev = ", ".join(f"{step}: {v:.4f}" for step, v in c.get("dev", []))
                curves.append(f"- {ROWS[name][0]}, seed {r['seed']}: {r.get('steps', len(tig))} steps; target in "
                              f"group {statistics.fmean(tig[:q]):.3f} (first {q}) -> {statistics.fmean(tig[-q:]):.3f} "
                              f"(last {q}); max KL {max(c['kl']):.4f}" + (f"; dev NDCG@10 by step {dev}" if dev else ""))
    if curves and info.get("sft_dev") is not None:
        curves.insert(0, f"- SFT (step 0 of every run): dev NDCG@10 {info['sft_dev']:.4f}")
    popularity = popularity_breakdown(results, n_users, info["target_counts"]) if info.get("target_counts") else []
    pool = ("the SFT pairs themselves (the authors' recipe)" if a.rl_pool == "sft" else
            f"a seeded random {a.heldout_frac:.0%} of the pairs, held out of SFT")
    settings = (
        f"- Data: MiniOneRec's Industrial_and_Scientific files; SFT on {info['n_sft']} (history prefix -> next item) "
        f"pairs of the valid split (full history, up to {a.max_history} items); RL pool: {pool} ({info['n_pool']} "
        f"prompts); dev: the valid events of {a.dev_users} held-out users (SFT early stopping and the lr choice); "
        f"evaluation: {n_users} test users, trie-constrained beam search with {a.eval_beams} beams.\n"
        f"- Tokenizer: {info['tokenizer']}; mean prompt length {info['prompt_len']:.0f} tokens; an item is 3 code "
        f"tokens + newline + EOS.\n"
        f"- Model: Qwen2-style from scratch, hidden {a.hidden}, {a.layers} layers, {a.heads} heads, MLP "
        f"{a.intermediate}, tied embeddings, {info['params'] / 1e6:.2f}M parameters, fp32.\n"
        f"- SFT: completion-only cross-entropy (lean loop), at most {a.sft_epochs:g} epochs, kept step "
        f"{info['sft_steps']} (lowest dev loss; dev loss by epoch {info['heldout']}), batch {a.sft_batch}, lr "
        f"{a.sft_lr:g}; {info['sft_s'] / 60:.1f} min.\n"
        f"- RL: {info['steps']} steps x {a.prompts_per_step} prompts x G={a.G} ({a.rl_epochs:g} epoch(s) of the pool "
        f"unless --rl_steps), beta {a.beta:g} (plain k3 KL), warmup_ratio {a.warmup_ratio:g}, lr per row from the grid "
        f"{a.lr_grid} by dev NDCG@10 (seed {a.tune_seed}); RL seeds as listed; cells are means over seeds (± half the "
        f"range); SEs are over users (paired for differences).\n"
        f"- Scoring: shared prompt {a.shared_prompt} (`shared_prompt_logprobs`, `shared_prompt_cache`).\n"
        f"- Hardware: {hardware(a.device)}."
    )
    return "\n".join(["### Table (Industrial test users, semantic IDs)", "", PUBLISHED, "", *lines, "",
                      "### ReRe (row 4) against each row, paired over users", "", *(goals or ["- (row 4 not run)"]), "",
                      "### By target popularity (NDCG@10, paired over the users of each third)", "",
                      *(popularity or ["- (needs row 1)"]), "",
                      "### Learning-rate choice (dev NDCG@10)", "", *(tuning or ["- (no RL rows)"]), "",
                      "### RL curves", "", *(curves or ["- (none)"]), "", "### Settings", "", settings])


def main(argv=None):
    a = parse_args(argv)
    a.cpu_shims = "off" if a.quick else "on"  # as repro_industrial: the default suite's --quick runs stock TRL
    install_cpu_shims(a)
    quiet_torch(a.threads)
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        sys.exit(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    seeds = [int(s) for s in a.seeds.split(",")]
    grid = [float(x) for x in a.lr_grid.split(",")]
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    try:
        catalog, ds = load_amazon(a.data_dir, CATEGORY, splits=("valid", "test"), item_format="sid",
                                  max_history=a.max_history)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    train, dev = split_dev(ds["valid"], a.dev_users, a.eval_seed)
    if a.sft_max_pairs:
        train = train.select(range(min(a.sft_max_pairs, len(train))))
    train, rl_pool = split_rl_pool(train, a.heldout_frac) if a.rl_pool == "heldout" else (train, train)
    test = ds["test"]
    if a.eval_users:
        test = test.select(sorted(random.Random(a.eval_seed).sample(range(len(test)), a.eval_users)))
    steps = rl_budget(a, len(rl_pool))
    log(f"data: {len(train)} SFT pairs, RL pool {len(rl_pool)} ({a.rl_pool}), {len(dev)} dev users, {len(test)} test "
        f"users, catalog {len(catalog)} SIDs / {catalog.num_items} items; RL {steps} steps per run")

    tok, tok_name = build_tokenizer(a, catalog, work)
    trie = ItemTrie.from_catalog(catalog, tok, item_format="sid")
    plen = statistics.fmean(len(x) for x in tok(list(test["prompt"]))["input_ids"])

    sft_cfg = {"tok": tok_name, "hidden": a.hidden, "layers": a.layers, "heads": a.heads, "inter": a.intermediate,
               "epochs": a.sft_epochs, "lr": a.sft_lr, "bs": a.sft_batch, "seed": a.sft_seed, "n": len(train),
               "dev": a.dev_users, "pool": a.rl_pool, "frac": a.heldout_frac, "hist": a.max_history}
    sft_dir, sft_info = cached_sft(work, sft_cfg, a.fresh)
    if sft_info is None and a.report_only:
        sys.exit(f"no SFT checkpoint for this configuration in {work}")
    elif sft_info is None:
        model = new_sft_model(tok, a)
        t0 = time.time()
        steps_kept, losses, heldout = lean_sft(model, tok, encode_examples(tok, train, "sid"), epochs=a.sft_epochs,
                                               lr=a.sft_lr, batch_size=a.sft_batch, seed=a.sft_seed,
                                               heldout=encode_examples(tok, dev, "sid"))
        sft_s = time.time() - t0
        n_batches = math.ceil(len(train) / a.sft_batch)
        log(f"SFT: {max(1, int(n_batches * a.sft_epochs))} steps in {sft_s:.0f}s "
            f"({sft_s / max(1, int(n_batches * a.sft_epochs)):.3f} s/step); kept step {steps_kept}")
        sft_info = {"train_s": sft_s, "steps": steps_kept, "losses": losses, "heldout": heldout,
                    "params": sum(p.numel() for p in model.parameters())}
        save_sft(model, tok, sft_dir, sft_info)
        del model

    suffix = "" if a.device == "cpu" else f"-{a.device.split(':')[0]}"
    dev_tag = f"dev{len(dev)}-{config_key(list(dev['user_id']))}-b{a.eval_beams}{suffix}"
    ctx = {"sft_dir": sft_dir, "trained": set(), "tok": tok, "catalog": catalog, "trie": trie, "rl_pool": rl_pool,
           "steps": steps, "dev": dev, "dev_tag": dev_tag}
    report_tag = f"test{len(test)}-{config_key(list(test['user_id']))}-b{a.eval_beams}{suffix}"
    compute = set() if a.report_only else set(rows)

    sft_dev = get_result("sft", None, None, ctx["dev_tag"], dev, "sft" in compute, a, ctx)
    results, chosen, dev_scores, diagnostic = {}, {}, {}, {}
    for name in ROWS:
        lr, dev_scores[name] = choose_lr(name, grid, a, ctx, name in compute)
        if ROWS[name][1] is not None and lr is None:
            log(f"{ROWS[name][0]}: lr tuning incomplete ({len(dev_scores[name])}/{len(grid)} on dev); not reported")
            continue
        chosen[name] = lr
        runs = []
        # seeds computed here, and any of seeds 0-9 cached by earlier invocations: runs done apart merge
        for seed in [None] if ROWS[name][1] is None else sorted(set(seeds) | set(range(10))):
            run = get_result(name, lr, seed, report_tag, test, name in compute and (seed is None or seed in seeds), a,
                             ctx)
            if run is not None:
                runs.append(run)
        if runs:
            results[name] = runs
        if a.test_every_lr and ROWS[name][1] is not None:
            # the chosen lr's run at the tuning seed is already among `runs`
            diagnostic[name] = {lr: r for r in runs if r["seed"] == a.tune_seed}
            for other in grid:
                if other not in diagnostic[name]:
                    run = get_result(name, other, a.tune_seed, report_tag, test, name in compute, a, ctx)
                    if run is not None:
                        diagnostic[name][other] = run

    sft_targets = collections.Counter(train["target"])
    info = {"n_users": len(test), "n_sft": len(train), "n_pool": len(rl_pool), "tokenizer":
            (f"byte-level BPE ({a.vocab_size}) trained on the prompt wording" if a.tokenizer == "bpe" else a.tokenizer)
            + f" + the SID codes, {len(tok)} tokens", "prompt_len": plen, "params": sft_info["params"],
            "sft_steps": sft_info["steps"], "heldout": sft_info["heldout"], "sft_s": sft_info["train_s"],
            "steps": steps, "sft_dev": sft_dev["metrics"]["NDCG@10"] if sft_dev else None,
            "target_counts": [sft_targets[t] for t in test["target"]]}
    table = render(results, chosen, dev_scores, a, info, diagnostic)
    print(table)
    (work / f"summary-{report_tag}.json").write_text(json.dumps(
        {k: [{"seed": r["seed"], "lr": r.get("lr"), "metrics": r["metrics"]} for r in v] for k, v in results.items()},
        indent=1))
    if not a.no_results:
        section = "repro_sid" if a.rl_pool == "sft" else "repro_sid_heldout"
        title = ("## ReRe over semantic IDs on Industrial_and_Scientific (`reproductions/repro_sid.py`"
                 + (")" if a.rl_pool == "sft" else ", held-out RL pool)"))
        write_section(PAGE, section, f"{title}\n\n{table}")
        log(f"wrote section {section} of {PAGE}")
    log(f"total wall time {(time.time() - t_start) / 60:.1f} min")


if __name__ == "__main__":
    main()
