"""Reproduction of ReRe over semantic IDs (MiniOneRec's setting) on Amazon Industrial_and_Scientific.

MiniOneRec (github.com/AkaliKong/MiniOneRec) trains ReRe's RL over 3-level semantic IDs and reports, on Industrial,
HR@10 0.1586 / NDCG@10 0.1167 (SASRec 0.0806, TIGER 0.0908 NDCG@10) with a pretrained Qwen2.5 model; the numbers are
here for scale only: this script trains a small model from scratch.

Pipeline and protocol (every RL row starts from the same SFT checkpoint and gets the same budget: prompts, steps, G,
beta, lr grid):

  data       MiniOneRec's files (`load_amazon(..., item_format="sid")`): prompt "### User Input: \\nThe user has
             interacted with items {sid_1}, ..., {sid_n} in chronological order. Can you predict ...
             \\n\\n### Response:\\n", up to 10 history items, completion "{sid}\\n" + EOS
  dev        the latest valid event of `--dev_users` (1,000) seeded users, held out of SFT and RL: their completion
             loss early-stops SFT and their ranking chooses each row's lr. Dev rows are valid events, never test rows.
  SFT pairs  every (history prefix -> next item) pair of the valid split, plus (`--sft_data valid+earlier`) the pairs
             of each test user's first test history that the valid split lacks (`earlier_pairs`): all before the
             user's first test event, and for a dev user before its dev event. Without them 70% of the test rows
             belong to users never trained on.
  tokenizer  byte-level BPE (`--vocab_size`) trained on the prompt wording and the item titles, plus one token per
             SID code (`add_sid_tokens`); one tokenizer for every row
  model      a small Qwen2-style causal LM initialised from scratch with the codes in its vocabulary
  SFT        completion-only cross-entropy (TRL SFTTrainer's objective, `_common.lean_sft`), at most `--sft_epochs`,
             the epoch with the lowest dev loss kept; deterministic for a seed and a thread count (the thread count
             is part of the checkpoint's key); `--sft_seeds` are all trained and ranked for SFT's own spread
  rows       1. SFT only
             1b. control: the SFT loss on the RL rows' prompts with their optimiser budget
             2. GRPO with trie-constrained temperature sampling, rule reward
             3. ReRe sampling (constrained beam search, G distinct items), rule reward only
             4. ReRe: beam search, rule + ranking reward (the method)
             5. SFT with MiniOneRec's alignment tasks (`--align_tasks`, `trl_rere.data.mix_sft_tasks`)
             6. ReRe from row 5, its RL pool with `--align_rl_tasks` (`mix_rl_tasks`), at row 4's lr unless
                `--align_lr tune`
  RL         ReReTrainer, item_format="sid", G=16, beta 1e-3, plain k3 KL (ReReConfig's default), `--rl_steps` x 64
             prompts from the SFT pairs (the authors' recipe), one lr per row from `--lr_grid` {1e-5, 3e-5, 1e-4}
             by dev NDCG@10 (seed `--tune_seed`), then every seed of `--seeds`
  eval       trie-constrained beam search, 50 beams, on all 4,533 test rows (1,987 users; `--eval_users 0`),
             HR@K / NDCG@K; standard errors clustered by user, differences paired over rows
  beam error `--beam_error_rows` test rows: the target's exact rank among all items (`_common.catalog_ranks`,
             teacher-forced) against its 50-beam rank, for SFT and ReRe (row `beam_error`)

Rows and seeds can run in separate invocations (`--rows rere --seeds 1`): every (row, lr, seed, evaluation) result is
a JSON file under `--work_dir`, reused when present, and the tables merge whatever results of this configuration are
there (`--report_only` merges without computing). `--rows` also takes `sft_spread` (the other SFT seeds) and
`beam_error`. The table goes to reproductions/sid.md, section `repro_sid` (`--section`: another model size's table
beside it); `--quick` runs a tiny configuration and writes nothing there.

Run:  python reproductions/repro_sid.py                                   (everything: tuning, 3 seeds per row)
      python reproductions/repro_sid.py --rows rere --seeds 0 --no_results (part of it; the rest in other invocations)
      python reproductions/repro_sid.py --report_only                     (the table from what is cached)
      python reproductions/repro_sid.py --quick                           (a minute on a CPU; sid.md untouched)
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
from reproductions._common import catalog_ranks, quiet_torch, rl_curve, run_eval  # noqa: E402
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
# the alignment variant: its own SFT (next-item pairs + --align_tasks) and ReRe from it (pool + --align_rl_tasks)
ROWS["sft_align"] = ("5. SFT + alignment tasks", None, None)
ROWS["rere_align"] = ("6. SFT + alignment tasks, then ReRe", "beam", ["rule", "ranking"])
BASE = {"sft_align": "sft", "rere_align": "sft_align"}  # the SFT row each row is paired against (default: "sft")
TASKS = ("sft_spread", "beam_error")  # --rows entries that are not table rows
GOALS = {"sft": "above SFT", "sft_ce": "above the supervised control", "grpo_sample": "above GRPO with sampling",
         "beam_rule": "ranking reward at least as good as rule only"}
ABLATION = ("MiniOneRec's own ablation (its README figure, read off the plot), HR@10 SFT -> SFT + RL: 0.109 -> 0.113 "
            "with a backbone trained from scratch, 0.116 -> 0.126 pretrained without its alignment tasks, 0.133 -> "
            "0.155 pretrained with them.")


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
    p.add_argument("--dev_users", type=int, default=1000, help="users whose latest valid event is the dev set")
    p.add_argument("--sft_data", choices=("valid", "valid+earlier"), default="valid+earlier",
                   help="SFT pairs: the valid split's prefix pairs, plus (valid+earlier) the pairs of each test "
                   "user's history before the first test event (`earlier_pairs`), so that every test user is trained "
                   "on")
    p.add_argument("--sft_seeds", default="0,1,2", help="SFT seeds trained and ranked for SFT's own seed-to-seed "
                   "spread "
                   "(row `sft_spread`); every RL row starts from --sft_seed")
    p.add_argument("--align_tasks", default="title2sid,sid2title",
                   help="alignment tasks mixed into SFT for the +align rows (trl_rere.data.mix_sft_tasks)")
    p.add_argument("--align_rl_tasks", default="title2sid",
                   help="alignment tasks mixed into the RL pool of the ReRe+align row (trl_rere.data.mix_rl_tasks)")
    p.add_argument("--align_lr", choices=("tune", "rere"), default="rere",
                   help="ReRe+align's lr: tuned on dev like every row, or the lr dev chose for ReRe (a rule fixed in "
                   "advance; saves the grid's runs)")
    p.add_argument("--beam_error_rows", type=int, default=1000,
                   help="test rows of the beam-error check (exact catalog rank vs 50-beam rank); 0: none")
    p.add_argument("--tokenizer", default="bpe", help="'bpe' (trained on the prompt wording) or a tokenizer folder")
    p.add_argument("--vocab_size", type=int, default=1024,
                   help="BPE vocabulary before the SID codes (trained on the prompt wording and the item titles)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=512)
    p.add_argument("--sft_epochs", type=float, default=10.0, help="at most; the epoch with the lowest dev loss is kept")
    p.add_argument("--sft_lr", type=float, default=2e-3)
    p.add_argument("--sft_batch", type=int, default=64)
    p.add_argument("--rl_epochs", type=float, default=1.0, help="passes over the RL pool")
    p.add_argument("--rl_steps", type=int, default=64,
                   help="RL steps per run (0: --rl_epochs passes over the pool); 64 x 64 prompts: the point where the "
                   "last tables' dev curves stopped improving")
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
    p.add_argument("--test_lrs", default=None,
                   help="with --test_every_lr, only these grid lrs (comma list; default: the whole grid)")
    p.add_argument("--dev_points", type=int, default=0,
                   help="dev evaluations during each RL run (the dev curve; 0: none, the run's end is ranked on dev "
                   "anyway)")
    p.add_argument("--shared_prompt", choices=("on", "off"), default="on",
                   help="ReReConfig.shared_prompt_logprobs and shared_prompt_cache: each group's prompt computed once "
                   "when scoring, and the CPU beam cache (same values up to float rounding)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny sanity run; sid.md untouched")
    p.add_argument("--fresh", action="store_true", help="ignore cached results")
    p.add_argument("--no_results", action="store_true", help="do not write reproductions/sid.md")
    p.add_argument("--section", default="repro_sid",
                   help="the section of reproductions/sid.md the table replaces: another model size (--hidden, "
                   "--layers, ...) gets its own, e.g. repro_sid_5m, so that the main table stays")
    a = p.parse_args(argv)
    if a.dev_points < 0:
        p.error(f"--dev_points must be at least 0, got {a.dev_points}")
    if not a.section.replace("_", "").isalnum():
        p.error(f"--section must be letters, digits and underscores (a marker name in sid.md), got {a.section!r}")
    if a.quick:
        a.work_dir = str(Path(a.work_dir) / "quick")
        a.sft_max_pairs, a.sft_epochs, a.sft_batch = 256, 1.0, 32
        a.rl_steps, a.prompts_per_step, a.G, a.lr_grid = 2, 2, 4, "1e-4,1e-3"
        a.seeds = "0" if a.seeds == p.get_default("seeds") else a.seeds
        a.eval_users, a.eval_beams, a.dev_users, a.beam_error_rows = 12, 10, 8, 6
        a.sft_seeds, a.align_rows = "0,1", 64
        a.hidden, a.layers, a.heads, a.intermediate = 32, 2, 2, 64
        a.no_results = True
    else:
        a.sft_max_pairs, a.align_rows = None, None
    if a.test_lrs is not None:  # checked after --quick, which brings its own grid
        if not a.test_every_lr:
            p.error("--test_lrs needs --test_every_lr (it chooses which grid lrs that diagnostic ranks)")
        try:
            outside = [x for x in a.test_lrs.split(",") if float(x) not in {float(g) for g in a.lr_grid.split(",")}]
        except ValueError as e:
            p.error(f"--test_lrs {a.test_lrs!r} / --lr_grid {a.lr_grid!r}: {e}")
        if outside:
            p.error(f"--test_lrs {','.join(outside)} not in --lr_grid {a.lr_grid}")
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


def earlier_pairs(test, dev, seen_pairs):
    """The (history prefix -> next item) pairs of each test user's history before the user's first test event that
    `seen_pairs` (the valid split's pairs) lacks: MiniOneRec's valid split covers 713 of the 1,987 test users, and the
    histories of the others' first test rows are their only earlier events.

    Only each user's *first* test row is read (a later row's history holds earlier test targets). A dev user keeps
    only the pairs before its dev event (the items of the first test history before the dev target's last
    occurrence; none when the target is not there), so the dev event and anything after it never reach SFT."""
    from datasets import Dataset

    first = {}
    for i, u in enumerate(test["user_id"]):
        first.setdefault(u, i)
    dev_target = dict(zip(dev["user_id"], dev["target_item_id"]))
    cols = {k: [] for k in ("user_id", "history_titles", "history_item_ids", "target", "target_item_id")}
    for u, i in first.items():
        titles, ids = list(test[i]["history_titles"]), list(test[i]["history_item_ids"])
        if u in dev_target:
            cut = max((k for k, x in enumerate(ids) if x == dev_target[u]), default=0)
            titles, ids = titles[:cut], ids[:cut]
        if len(ids) < 2:
            continue
        cols["user_id"].append(u)
        cols["history_titles"].append(titles[:-1])
        cols["history_item_ids"].append(ids[:-1])
        cols["target"].append(titles[-1])
        cols["target_item_id"].append(ids[-1])
    rows = Dataset.from_dict({"prompt": [""] * len(cols["user_id"]), **cols})
    pairs = sid_prefix_pairs(rows)
    seen = {(u, tuple(h), t) for u, h, t in zip(seen_pairs["user_id"], seen_pairs["history_item_ids"],
                                                 seen_pairs["target_item_id"])}
    seen |= {(u, tuple(h), t) for u, h, t in zip(dev["user_id"], dev["history_item_ids"], dev["target_item_id"])}
    keep = [i for i, e in enumerate(zip(pairs["user_id"], pairs["history_item_ids"], pairs["target_item_id"]))
            if (e[0], tuple(e[1]), e[2]) not in seen]
    return pairs.select(keep)


def sft_pairs(valid, test, n_dev: int, seed: int, sft_data: str = "valid+earlier"):
    """(SFT pairs, dev rows, the valid split's pairs, the earlier pairs): `split_dev`, then with "valid+earlier" the
    `earlier_pairs` of the test users appended; what every SFT checkpoint of the table trains on."""
    from datasets import concatenate_datasets

    valid_pairs, dev = split_dev(valid, n_dev, seed)
    earlier = earlier_pairs(test, dev, valid_pairs) if sft_data == "valid+earlier" else valid_pairs.select([])
    train = concatenate_datasets([valid_pairs, earlier]) if len(earlier) else valid_pairs
    return train, dev, valid_pairs, earlier


def build_tokenizer(a, catalog, texts, work: Path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cfg = {"tok": a.tokenizer, "vocab": a.vocab_size, "codes": config_key(sorted(catalog.titles))}
    if texts is not None:  # None: the wording alone (sid_quality's recipe, measured before the titles were added)
        cfg["titles"] = config_key(sorted(texts.titles.values()))
    tok_dir = work / f"tokenizer-{config_key(cfg)}"
    if (tok_dir / "tokenizer.json").exists() and not a.fresh:
        return PreTrainedTokenizerFast.from_pretrained(tok_dir), tok_dir.name
    if a.tokenizer == "bpe":
        wording = SID_PROMPT_TEMPLATE.replace("{history}", "")
        # the titles too: the +align rows ask for them, and every row shares one tokenizer
        # the wording is repeated so that its words are merged whole, as few titles' words are
        titles = sorted(texts.titles.values()) if texts is not None else []
        tok = train_tokenizer([wording] * max(4, len(titles)) + ["0123456789, "] + titles, kind="bpe",
                              vocab_size=a.vocab_size)
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
        output_dir=str(Path(a.work_dir) / f"rl-tmp-{name}-{lr:g}-{seed}"), item_format="sid",  # invocations in parallel
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
                                eval_steps=max(1, steps // max(1, a.dev_points)), batch_size=a.eval_batch)
    if a.dev_points:
        dev_eval.attach(trainer)
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
           "warmup": a.warmup_ratio, "seed": seed}
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


def popularity_breakdown(results, n_users: int, target_counts: list[int], clusters=None) -> list[str]:
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
        if name not in ROWS or name == "sft" or BASE.get(name, "sft") != "sft":
            continue
        per_user = per_user_ndcg(runs, n_users)
        cells = []
        for us in users:
            if len(us) < 2:
                cells.append("—")
                continue
            dm, dse = paired_difference([per_user[u] for u in us], [base[u] for u in us],
                                        None if clusters is None else [clusters[u] for u in us])
            cells.append(f"{dm:+.4f} (SE {dse:.4f})")
        lines.append(f"| {ROWS[name][0]} (Δ vs SFT) | " + " | ".join(cells) + " |")
    return lines


# -- report -----------------------------------------------------------------------------------------------------------
def paired_goal(mine, theirs, n_users, clusters, label, goal) -> str:
    dm, dse = paired_difference(per_user_ndcg(mine, n_users), per_user_ndcg(theirs, n_users), clusters)
    verdict = "met" if dm > 2 * dse else ("not met" if dm < 0 else "not met (above, within 2 SE)")
    if dm < 0 and abs(dm) < 2 * dse:
        verdict += " (below, within 2 SE)"
    return f"- vs {label}: {dm:+.4f} NDCG@10 (SE {dse:.4f}); {goal}: {verdict}"


def hit10(ranks) -> float:
    return sum(r is not None and r < 10 for r in ranks) / len(ranks)


def beam_error_lines(errors: dict) -> list[str]:
    """The beam-error check: each checked run's exact catalog ranks against its 50-beam ranks, over the same rows."""
    lines = []
    for name, e in errors.items():
        exact, beam, n = e["exact"], e["beam"], len(e["exact"])
        in_top = [i for i in range(n) if exact[i] < e["beams"]]
        lost = [i for i in in_top if beam[i] is None]
        moved = [i for i in in_top if beam[i] is not None and beam[i] != exact[i]]
        lines.append(f"- {ROWS[name][0]}: of {n} test rows, the target is in the exact top {e['beams']} for "
                     f"{len(in_top)}; beam search lost it in {len(lost)} and ranked it elsewhere in {len(moved)}; "
                     f"HR@10 exact {hit10(exact):.4f} vs beam {hit10(beam):.4f}; {e['seconds']:.0f}s")
    return lines


def render(results, chosen, dev_scores, a, info, diagnostic=None, spread=None, errors=None) -> str:
    n_users, clusters = info["n_users"], info["users"]
    ks = DEFAULT_KS
    head = ("| row | lr | seeds | " + " | ".join(f"HR@{k}" for k in ks) + " | " + " | ".join(f"NDCG@{k}" for k in ks)
            + " | NDCG@10 ± SE | Δ NDCG@10 vs its SFT (rel.) | SE of Δ | RL train s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, runs in results.items():
        cells = metric_cells(runs, [f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks])
        per_user = per_user_ndcg(runs, n_users)
        m, se = mean_se(per_user, clusters)
        delta = dse = "—"
        base_name = BASE.get(name, "sft")
        if base_name in results and name != "sft":
            base = per_user_ndcg(results[base_name], n_users)
            dm, dse_v = paired_difference(per_user, base, clusters)
            ref = statistics.fmean(base)
            delta = (f"{dm:+.4f} ({100 * dm / ref:+.1f}%)" if ref > 0 else f"{dm:+.4f}") + f" vs {base_name}"
            dse = f"{dse_v:.4f}"
        seeds = ",".join(str(r["seed"]) for r in runs) if runs[0]["seed"] is not None else f"sft {a.sft_seed}"
        lr = f"{chosen[name]:g}" if chosen.get(name) is not None else "—"
        lines.append(f"| {ROWS[name][0]} | {lr} | {seeds} | " + " | ".join(cells) + f" | {m:.4f} ± {se:.4f} | {delta} "
                     f"| {dse} | {statistics.fmean(r['train_s'] for r in runs):.0f} |")
    goals = []
    if "rere" in results:
        for other, goal in GOALS.items():
            if other in results:
                goals.append(paired_goal(results["rere"], results[other], n_users, clusters, ROWS[other][0], goal))
    if "rere_align" in results and "sft_align" in results:
        goals.append(paired_goal(results["rere_align"], results["sft_align"], n_users, clusters,
                                 ROWS["sft_align"][0], "ReRe+align above SFT+align"))
    spread_lines = []
    if spread:
        vals = {r["seed"]: r["metrics"]["NDCG@10"] for r in spread}
        seeds = f"{len(vals)} seed{'s' * (len(vals) > 1)}"
        spread_lines.append(f"- SFT, {seeds} (same data and recipe): NDCG@10 "
                            + ", ".join(f"seed {s}: {v:.4f}" for s, v in sorted(vals.items()))
                            + f"; range {max(vals.values()) - min(vals.values()):.4f}")
        for name, runs in results.items():
            if len(runs) > 1:
                v = [r["metrics"]["NDCG@10"] for r in runs]
                spread_lines.append(f"- {ROWS[name][0]}, {len(v)} RL seeds from SFT seed {a.sft_seed}: range "
                                    f"{max(v) - min(v):.4f}")
    tuning = [f"- {ROWS[n][0]}: " + ", ".join(f"lr {lr:g}: {s:.4f}" for lr, s in sorted(sc.items()))
              for n, sc in dev_scores.items() if sc]
    if tuning and info.get("sft_dev") is not None:
        tuning.insert(0, f"- 1. SFT only (the start of every row): {info['sft_dev']:.4f}")
    if diagnostic:
        tuning += ["", (f"Every grid lr (seed {a.tune_seed}) on the reported rows, never used to choose: NDCG@10 and "
                        "the difference to the row's SFT (clustered SE):")]
        for name, by_lr in diagnostic.items():
            base_name = BASE.get(name, "sft")
            if base_name not in results:
                continue
            base = per_user_ndcg(results[base_name], n_users)
            cells = []
            for lr, run in sorted(by_lr.items()):
                dm, dse_v = paired_difference(per_user_ndcg([run], n_users), base, clusters)
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
                              f"(last {q}); max KL {max(c['kl']):.4f}"
                              + (f"; dev NDCG@10 by step {dev}" if dev else ""))
    if any("dev NDCG@10 by step" in c for c in curves) and info.get("sft_dev") is not None:
        curves.insert(0, f"- SFT (step 0 of every run): dev NDCG@10 {info['sft_dev']:.4f}")
    popularity = popularity_breakdown(results, n_users, info["target_counts"], clusters)
    align_line = ""
    if set(results) & {"sft_align", "rere_align"}:
        align_line = (f"- Alignment rows: SFT adds {a.align_tasks} ({info.get('n_align', 0)} rows; "
                      f"`trl_rere.data.mix_sft_tasks`), the RL pool adds {a.align_rl_tasks} "
                      f"({info.get('n_align_rl', 0)} prompts; `mix_rl_tasks`); lr: "
                      + ("tuned on dev" if a.align_lr == "tune" else "the lr dev chose for row 4 (fixed in advance)")
                      + ".\n")
    settings = (
        f"- Data: MiniOneRec's Industrial_and_Scientific files. SFT pairs: {info['n_sft']} = {info['n_valid_pairs']} "
        f"(history prefix -> next item) pairs of the valid split + {info['n_earlier']} earlier pairs of the test "
        f"users' histories (before each user's first test event); up to {a.max_history} history items. RL pool: the "
        f"SFT pairs (the authors' recipe). Dev: the latest valid event of {info['n_dev']} seeded users, held out of "
        f"SFT and RL (early stopping, lr choice). Reported: all {n_users} test rows of {len(set(clusters))} users; "
        f"SEs clustered by user. Trie-constrained beam search, {a.eval_beams} beams.\n"
        + align_line +
        f"- Tokenizer: {info['tokenizer']}; mean prompt length {info['prompt_len']:.0f} tokens; an item is 3 code "
        f"tokens + newline + EOS.\n"
        f"- Model: Qwen2-style from scratch, hidden {a.hidden}, {a.layers} layers, {a.heads} heads, MLP "
        f"{a.intermediate}, tied embeddings, {info['params'] / 1e6:.2f}M parameters, fp32.\n"
        f"- SFT: completion-only cross-entropy (lean loop, deterministic for a seed and thread count), at most "
        f"{a.sft_epochs:g} epochs, the epoch with the lowest dev loss kept (seed {a.sft_seed}: step "
        f"{info['sft_steps']}, "
        f"dev loss by epoch {info['heldout']}), batch {a.sft_batch}, lr {a.sft_lr:g}; {info['sft_s'] / 60:.1f} min.\n"
        f"- RL: {info['steps']} steps x {a.prompts_per_step} prompts x G={a.G}, beta {a.beta:g} (plain k3 KL), "
        f"warmup_ratio {a.warmup_ratio:g}; lr per row from {{{a.lr_grid}}} by dev NDCG@10 (seed {a.tune_seed}); cells "
        f"are means over seeds (± half the range).\n"
        f"- Hardware: {hardware(a.device)}."
    )
    return "\n".join(["### Table (Industrial test rows, semantic IDs)", "", PUBLISHED, ABLATION, "", *lines, "",
                      "### ReRe against each row, paired over test rows (SE clustered by user)", "",
                      *(goals or ["- (row 4 not run)"]), "", "### Seed spread (NDCG@10 on the reported rows)", "",
                      *(spread_lines or ["- (row sft_spread not run)"]), "", "### Beam-error check", "",
                      *(beam_error_lines(errors or {}) or ["- (not run)"]), "",
                      "### By target popularity (NDCG@10, paired over the rows of each third)", "",
                      *(popularity or ["- (needs row 1)"]), "",
                      "### Learning-rate choice (dev NDCG@10)", "", *(tuning or ["- (no RL rows)"]), "",
                      "### RL groups (in-sample)", "", *(curves or ["- (none)"]), "", "### Settings", "", settings])


def train_sft(a, work, tok, tok_name, train, dev, seed, compute, align=None):
    """(folder, info) of the SFT checkpoint for `seed` (trained when `compute` and not cached; info None if not).
    `align`: the prompt-completion rows of the SFT mix with the alignment tasks, instead of `train` alone."""
    data = align if align is not None else train
    cfg = {"tok": tok_name, "hidden": a.hidden, "layers": a.layers, "heads": a.heads, "inter": a.intermediate,
           "epochs": a.sft_epochs, "lr": a.sft_lr, "bs": a.sft_batch, "seed": seed, "n": len(data),
           "rows": config_key(list(data["prompt"])), "dev": len(dev), "hist": a.max_history,
           "align": a.align_tasks if align is not None else "", "threads": a.threads}
    sft_dir, info = cached_sft(work, cfg, a.fresh)
    if info is not None or not compute:
        return sft_dir, info
    model = new_sft_model(tok, a, seed)
    t0 = time.time()
    steps_kept, losses, heldout = lean_sft(model, tok, encode_examples(tok, data, "sid"), epochs=a.sft_epochs,
                                           lr=a.sft_lr, batch_size=a.sft_batch, seed=seed,
                                           heldout=encode_examples(tok, dev, "sid"))
    sft_s = time.time() - t0
    log(f"SFT seed {seed}{' + align' if align is not None else ''}: {sft_s:.0f}s; kept step {steps_kept}")
    info = {"train_s": sft_s, "steps": steps_kept, "losses": losses, "heldout": heldout,
            "params": sum(p.numel() for p in model.parameters())}
    save_sft(model, tok, sft_dir, info)
    return sft_dir, info


def collect(names, grid, seeds, compute, a, ctxs, report_tag, test, chosen) -> tuple[dict, dict, dict]:
    """Tunes and runs the rows `names` (each in its variant's context), reading what earlier invocations cached."""
    results, dev_scores, diagnostic = {}, {}, {}
    for name in names:
        ctx = ctxs[name]
        if name == "rere_align" and a.align_lr == "rere":
            lr, dev_scores[name] = chosen.get("rere"), {}
        else:
            lr, dev_scores[name] = choose_lr(name, grid, a, ctx, name in compute)
        if ROWS[name][1] is not None and lr is None:
            log(f"{ROWS[name][0]}: lr not chosen yet ({len(dev_scores[name])}/{len(grid)} on dev); not reported")
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
        if a.test_every_lr and ROWS[name][1] is not None and dev_scores[name]:
            diagnostic[name] = {lr: r for r in runs if r["seed"] == a.tune_seed}
            for other in [float(x) for x in a.test_lrs.split(",")] if a.test_lrs else grid:
                if other not in diagnostic[name]:
                    run = get_result(name, other, a.tune_seed, report_tag, test, name in compute, a, ctx)
                    if run is not None:
                        diagnostic[name][other] = run
    return results, dev_scores, diagnostic


def beam_errors(results, a, ctxs, test, report_tag, compute) -> dict:
    """Exact catalog ranks (`catalog_ranks`, capped at the beam width: only ranks inside it can be compared) of the
    first `--beam_error_rows` rows of a seeded permutation of the test rows, for SFT and ReRe (tuning seed), beside the
    same rows' beam ranks; cached like the runs."""
    from transformers import AutoModelForCausalLM

    order = list(range(len(test)))
    random.Random(a.eval_seed).shuffle(order)
    rows = sorted(order[: a.beam_error_rows])
    out = {}
    for name in ("sft", "rere"):
        run = next((r for r in results.get(name, []) if r["seed"] in (None, a.tune_seed)), None)
        if run is None:
            continue
        ctx = ctxs[name]
        stem = run_name(name, run.get("lr"), run["seed"], a, ctx["steps"])
        path = ctx["sft_dir"] / f"{stem}-exact{len(rows)}c{a.eval_beams}-{report_tag}.json"
        if not path.exists() or a.fresh:
            if not compute:
                continue
            model_dir = ctx["sft_dir"] if name == "sft" else ctx["sft_dir"] / f"{stem}-model"
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(a.device)
            t0 = time.time()
            exact = catalog_ranks(model, ctx["tok"], [test[i]["prompt"] for i in rows],
                                  [test[i]["target"] for i in rows], ctx["trie"], cap=a.eval_beams)
            path.write_text(json.dumps({"rows": rows, "exact": exact, "seconds": time.time() - t0}))
            log(f"  beam-error check {name}: {len(rows)} rows in {time.time() - t0:.0f}s")
        saved = json.loads(path.read_text())
        out[name] = {"exact": saved["exact"], "beam": [run["ranks"][i] for i in saved["rows"]],
                     "beams": a.eval_beams, "seconds": saved["seconds"]}
    return out


def main(argv=None):
    from trl_rere.data import load_item_texts, mix_rl_tasks, mix_sft_tasks

    a = parse_args(argv)
    a.cpu_shims = "off" if a.quick else "on"  # as repro_industrial: the default suite's --quick runs stock TRL
    install_cpu_shims(a)
    quiet_torch(a.threads)
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS and r not in TASKS]
    if unknown:
        sys.exit(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join([*ROWS, *TASKS])}")
    seeds = [int(s) for s in a.seeds.split(",")]
    grid = [float(x) for x in a.lr_grid.split(",")]
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    try:
        catalog, ds = load_amazon(a.data_dir, CATEGORY, splits=("valid", "test"), item_format="sid",
                                  max_history=a.max_history)
        texts = load_item_texts(a.data_dir, CATEGORY, catalog)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    test = ds["test"]
    train, dev, valid_pairs, earlier = sft_pairs(ds["valid"], test, a.dev_users, a.eval_seed, a.sft_data)
    if a.sft_max_pairs:
        train = train.select(range(min(a.sft_max_pairs, len(train))))
    if a.eval_users:
        test = test.select(sorted(random.Random(a.eval_seed).sample(range(len(test)), a.eval_users)))
    rl_pool = train
    align_rl = mix_rl_tasks(train, a.align_rl_tasks, catalog, texts, seed=a.sft_seed,
                            num_rows={t: a.align_rows for t in a.align_rl_tasks.split(",")} if a.align_rows else None)
    steps = rl_budget(a, len(rl_pool))
    log(f"data: {len(train)} SFT pairs ({len(valid_pairs)} valid + {len(earlier)} earlier), {len(dev)} dev rows, "
        f"{len(test)} test rows of {len(set(test['user_id']))} users, catalog {len(catalog)} SIDs; RL {steps} steps")

    tok, tok_name = build_tokenizer(a, catalog, texts, work)
    trie = ItemTrie.from_catalog(catalog, tok, item_format="sid")
    plen = statistics.fmean(len(x) for x in tok(list(test["prompt"]))["input_ids"])
    align_sft = mix_sft_tasks(train, a.align_tasks, catalog, texts, seed=a.sft_seed,
                              num_rows={t: a.align_rows for t in a.align_tasks.split(",")} if a.align_rows else None)

    compute = set() if a.report_only else set(rows)
    align_rows = {"sft_align", "rere_align"}
    # an invocation of the +align rows alone does not train the base SFT (another one may be doing it)
    sft_dir, sft_info = train_sft(a, work, tok, tok_name, train, dev, a.sft_seed, bool(compute - align_rows))
    align_dir, align_info = train_sft(a, work, tok, tok_name, train, dev, a.sft_seed, bool(compute & align_rows),
                                      align=align_sft)
    if sft_info is None and align_info is None:
        sys.exit(f"no SFT checkpoint for this configuration in {work}")

    suffix = "" if a.device == "cpu" else f"-{a.device.split(':')[0]}"
    dev_tag = f"dev{len(dev)}-{config_key(list(dev['user_id']))}-b{a.eval_beams}{suffix}"
    report_tag = f"test{len(test)}-{config_key(list(test['user_id']))}-b{a.eval_beams}{suffix}"
    base_ctx = {"sft_dir": sft_dir, "trained": set(), "tok": tok, "catalog": catalog, "trie": trie, "rl_pool": rl_pool,
                "steps": steps, "dev": dev, "dev_tag": dev_tag}
    align_ctx = {**base_ctx, "sft_dir": align_dir, "rl_pool": align_rl, "steps": rl_budget(a, len(align_rl))}
    ctxs = {n: align_ctx if n in ("sft_align", "rere_align") else base_ctx for n in ROWS}

    # SFT on dev: the reference point of every row's dev score
    sft_dev = get_result("sft", None, None, dev_tag, dev, "sft" in compute, a, base_ctx) if sft_info else None
    chosen = {}
    names = [n for n in ROWS if (n in align_rows and align_info is not None) or (n not in align_rows and sft_info)]
    results, dev_scores, diagnostic = collect(names, grid, seeds, compute, a, ctxs, report_tag, test, chosen)
    spread = []
    for seed in [int(s) for s in a.sft_seeds.split(",")] if sft_info else []:
        s_dir = sft_dir
        if seed != a.sft_seed:
            s_dir, info = train_sft(a, work, tok, tok_name, train, dev, seed, "sft_spread" in compute)
            if info is None:
                continue
        run = get_result("sft", None, None, report_tag, test, "sft_spread" in compute or seed == a.sft_seed and
                         "sft" in compute, a, {**base_ctx, "sft_dir": s_dir})
        if run is not None:
            spread.append({**run, "seed": seed})
    errors = beam_errors(results, a, ctxs, test, report_tag, "beam_error" in compute) if a.beam_error_rows else {}

    sft_targets = collections.Counter(train["target"])
    info = {"n_users": len(test), "users": list(test["user_id"]), "n_sft": len(train),
            "n_valid_pairs": len(valid_pairs), "n_earlier": len(earlier), "n_dev": len(dev),
            "n_align": len(align_sft) - len(train), "n_align_rl": len(align_rl) - len(train), "tokenizer":
            (f"byte-level BPE ({a.vocab_size}) trained on the prompt wording and the item titles"
             if a.tokenizer == "bpe"
             else a.tokenizer) + f" + the SID codes, {len(tok)} tokens", "prompt_len": plen,
            "params": (sft_info or align_info)["params"], "sft_steps": (sft_info or align_info)["steps"],
            "heldout": (sft_info or align_info)["heldout"], "sft_s": (sft_info or align_info)["train_s"],
            "sft_dev": sft_dev["metrics"]["NDCG@10"] if sft_dev else None, "steps": steps,
            "target_counts": [sft_targets[t] for t in test["target"]]}
    table = render(results, chosen, dev_scores, a, info, diagnostic, spread, errors)
    print(table)
    (work / f"summary-{report_tag}.json").write_text(json.dumps(
        {k: [{"seed": r["seed"], "lr": r.get("lr"), "metrics": r["metrics"]} for r in v] for k, v in results.items()},
        indent=1))
    if not a.no_results:
        write_section(PAGE, a.section, f"## ReRe over semantic IDs on Industrial_and_Scientific, "
                      f"{info['params'] / 1e6:.2f}M-parameter model (`reproductions/repro_sid.py`)\n\n{table}")
        log(f"wrote section {a.section} of {PAGE}")
    log(f"total wall time {(time.time() - t_start) / 60:.1f} min")


if __name__ == "__main__":
    main()
