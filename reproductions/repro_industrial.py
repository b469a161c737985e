"""Small-scale reproduction of ReRe's headline comparison on Amazon Industrial_and_Scientific (CPU-sized).

Pipeline (every row starts from the same SFT checkpoint and gets the same RL budget: prompts, steps, G, lr, beta):

  tokenizer  byte-level BPE trained locally on the catalog titles and the SFT prompts
  model      a small Qwen2-style causal LM initialised from scratch (`trl_rere.testing.tiny_causal_lm`)
  data       every (history prefix -> next item) pair of the Industrial **valid** split's sequences; a seeded random
             15% of them is held out of SFT as the RL prompt pool (`--rl_pool sft`: RL on the SFT pairs, as the paper)
  SFT        completion-only loss (the objective of TRL's `SFTTrainer`, as a lean CPU loop), prompt ->
             '"{title}"\\n' + EOS; the pool's completion loss after every epoch picks the epoch kept
  rows       1. SFT only
             1b. control: the SFT loss on as many pool prompts, with the RL rows' optimiser budget (tells a gain from
                 the pool's extra data apart from a gain from RL)
             2. SFT + GRPO, trie-constrained temperature sampling (sampling_strategy="sample"), rule reward
             3. SFT + ReRe sampling (constrained beam search, G distinct items), rule reward only
             4. SFT + ReRe: beam search, rule + ranking reward (the method)
             5. (optional) SFT + dynamic sampling (1.5 G draws, target + most frequent negatives), rule + ranking
  eval       Industrial **test** split, a fixed random subset of users (the same for every row), trie-constrained
             beam search with 50 beams, HR@K / NDCG@K for K in 1,3,5,10,20,50; NDCG@10 with its standard error and
             the paired standard error of each row's difference to SFT (same users, so differences are paired)

Why a held-out RL pool: the paper trains RL on its SFT data, but a 2M-parameter model trained from scratch memorises
its SFT pairs (after 5 epochs: completion loss 0.35 on them, 0.71 on held-out pairs), and RL on them taught it to
trust that memory: ranking on training prompts improved while test ranking fell (the `--rl_pool sft` runs, in the
git history of benchmarks/RESULTS.md).
Holding pairs out costs the SFT model data, so row 1b gives the same pairs to the supervised loss.

Tuning is done on a *dev* subset of test users disjoint from the reported subset (`--eval_split dev`), so the
reported users are never used to choose a setting.

The defaults are sized for 2 CPU cores: a 2.1M-parameter model, up to 5 SFT epochs (the best by the pool's loss is
kept) over 18k of the valid split's 21k (history prefix -> next item) pairs, 60 RL steps of 8 prompts x G=16, a 500-user evaluation subset, a short prompt (the
authors' history line without the instruction preamble) with max_history 2. Widen them (--template default
--max_history 10 --hidden 256 --sft_epochs 10 --eval_users 0 ...) where compute allows.

Run:  python reproductions/repro_industrial.py             (full run: see the wall time in industrial_titles.md)
      python reproductions/repro_industrial.py --quick     (tiny sanity run, a few minutes; the page is not touched)
      python reproductions/repro_industrial.py --device cuda --eval_users 2000 --eval_batch 100 --prompts_per_step 32 \
          --rl_steps 99 --seeds 0,1 --results_section repro_industrial_gpu_lr3e-05
                                                            (on a GPU: the authors' RL batch of 32 prompts x 16, one
                                                            epoch of the pool, 2000 users; copy the CPU run's SFT
                                                            folder into --work_dir to reuse it, or SFT runs on the GPU)
Intermediate results (tokenizer, SFT checkpoint, one JSON per row and seed) go to reproductions/_work/ so an
interrupted run resumes where it stopped (pass --fresh to recompute). The final table is printed and written to
reproductions/industrial_titles.md between this reproduction's markers.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: trl_rere, benchmarks, reproductions

import torch  # noqa: E402

from benchmarks._results import write_section  # noqa: E402
from reproductions._common import (  # noqa: E402  (sets up the environment for the package)
    CATEGORY,
    REPO,
    ROWS,
    WORK_DIR,
    cached_sft,
    config_key,
    encode_examples,
    eval_subset,
    hardware,
    install_cpu_shims,
    lean_sft,
    log,
    mean_se,
    metric_cells,
    new_sft_model,
    paired_difference,
    per_user_ndcg,
    rl_curve,
    run_eval,
    save_sft,
    split_rl_pool,
)
from trl_rere.data import DEFAULT_PROMPT_TEMPLATE, load_amazon, title_prefix_pairs  # noqa: E402
from trl_rere.evaluation import DEFAULT_KS  # noqa: E402
from trl_rere.testing import train_tokenizer  # noqa: E402
from trl_rere.trie import ItemTrie  # noqa: E402


PAGE = REPO / "reproductions" / "industrial_titles.md"

# The authors' history line and response header without the ~90-token instruction preamble, which a model trained
# from scratch cannot use and which would double every forward pass and the beam-search KV cache on a CPU.
SHORT_TEMPLATE = "The user has palyed the following {category}s before: {history}\n\n### Response:\n"

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"), help="folder with (amazon/)info, valid, test")
    p.add_argument("--work_dir", default=str(WORK_DIR))
    p.add_argument("--rows", default="sft,sft_ce,grpo_sample,beam_rule,rere", help=f"comma list of {','.join(ROWS)}")
    p.add_argument("--seeds", default="0", help="RL seeds (comma list); the SFT checkpoint is shared")
    p.add_argument("--sft_seed", type=int, default=0)
    # data / tokenizer / model
    p.add_argument("--template", choices=("short", "default"), default="short",
                   help="'default': the authors' full prompt; 'short': only its history line and response header")
    p.add_argument("--max_history", type=int, default=2)
    p.add_argument("--train_rows", choices=("prefixes", "valid"), default="prefixes",
                   help="'prefixes': every (history prefix -> next item) pair of the valid split's sequences, as the "
                        "authors' train split is built; 'valid': one row per valid user")
    p.add_argument("--vocab_size", type=int, default=8192)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=512)
    # SFT
    p.add_argument("--sft_epochs", type=float, default=5.0,
                   help="at most; with --rl_pool heldout the epoch with the lowest pool loss is kept")
    p.add_argument("--sft_lr", type=float, default=2e-3)
    p.add_argument("--sft_batch", type=int, default=64)
    p.add_argument("--sft_max_examples", type=int, default=None, help="train SFT on the first N valid rows only")
    p.add_argument("--rl_pool", choices=("heldout", "sft"), default="heldout",
                   help="where RL prompts come from: 'heldout' = a random --heldout_frac of the train pairs that SFT "
                        "does not train on; 'sft' = the SFT pairs themselves (the paper's setup)")
    p.add_argument("--heldout_frac", type=float, default=0.15)
    # RL
    p.add_argument("--rl_steps", type=int, default=60)
    p.add_argument("--prompts_per_step", type=int, default=8)
    p.add_argument("--G", type=int, default=16)
    p.add_argument("--rl_lr", type=float, default=3e-5)
    p.add_argument("--beta", type=float, default=1e-3)
    p.add_argument("--warmup_ratio", type=float, default=0.03)
    # eval
    p.add_argument("--eval_users", type=int, default=500, help="fixed random subset of test users (0: all)")
    p.add_argument("--eval_split", choices=("report", "dev"), default="report",
                   help="'dev': a disjoint subset of test users for tuning; 'report': the reported subset")
    p.add_argument("--dev_users", type=int, default=300)
    p.add_argument("--eval_seed", type=int, default=1234)
    p.add_argument("--eval_beams", type=int, default=50)
    p.add_argument("--eval_batch", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu",
                   help="'cpu' (the reported 2-core run) or an accelerator such as 'cuda'; fp32 either way")
    p.add_argument("--cpu_shims", choices=("on", "off"), default="on",
                   help="on CPU, install benchmarks/_cpu.py's value-preserving speed-ups into TRL and glibc malloc "
                        "(off under --quick, so the sanity run tests stock TRL)")
    p.add_argument("--quick", action="store_true", help="~2-minute sanity run (tiny sizes, the results page untouched)")
    p.add_argument("--fresh", action="store_true", help="ignore cached results in work_dir")
    p.add_argument("--no_results", action="store_true", help="do not write reproductions/industrial_titles.md")
    p.add_argument("--results_section", default=None,
                   help="section of industrial_titles.md to (over)write (default: repro_industrial_lr{rl_lr}), e.g. one per RL setting")
    a = p.parse_args(argv)
    # for the settings text: what reproduces this section
    a.command = shlex.join(["python", "reproductions/repro_industrial.py", *(sys.argv[1:] if argv is None else argv)])
    if a.quick:
        a.work_dir = str(Path(a.work_dir) / "quick")
        a.sft_max_examples, a.sft_epochs, a.sft_batch = 256, 1.0, 32
        a.rl_steps, a.prompts_per_step, a.G = 2, 2, 4
        a.eval_users, a.eval_beams, a.dev_users = 16, 10, 16
        a.vocab_size, a.hidden, a.intermediate = 2048, 64, 128
        a.no_results = True
        a.cpu_shims = "off"
    return a


def reference_model_note(beta: float, rl_steps: int) -> str:
    """What the KL term's reference model was during RL, in words.

    ReReConfig turns `sync_ref_model` on, but TRL's SyncRefModelCallback mixes the policy into the reference only when
    the global step is a multiple of `ref_model_sync_steps` (TRL's default 512), so a shorter run never syncs and its
    reference is the SFT model throughout; saying "synced" would describe a run that did not happen."""
    from trl_rere import ReReConfig

    if beta == 0.0:
        return "no reference model (beta 0)"
    if not getattr(ReReConfig, "sync_ref_model", False):
        return "reference: the SFT model throughout (sync_ref_model off)"
    every = ReReConfig.ref_model_sync_steps
    syncs = rl_steps // every
    if syncs == 0:
        return (f"reference: the SFT model throughout (sync_ref_model is on, as in ReReConfig, but TRL syncs only "
                f"every ref_model_sync_steps = {every} steps, so no sync happened in {rl_steps} steps)")
    return (f"reference synced {syncs} time(s), every {every} steps with mixup alpha "
            f"{ReReConfig.ref_model_mixup_alpha:g} (sync_ref_model, as in ReReConfig)")


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    install_cpu_shims(a)
    warnings.filterwarnings("ignore", category=UserWarning)
    import transformers
    transformers.logging.set_verbosity_error()
    from trl_rere import ReReConfig, ReReTrainer

    t_start = time.time()
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    for r in rows:
        if r not in ROWS:
            sys.exit(f"unknown row {r!r}; choose from {', '.join(ROWS)}")
    seeds = [int(s) for s in a.seeds.split(",")]

    # -- data --------------------------------------------------------------------------------------------------
    try:
        template = DEFAULT_PROMPT_TEMPLATE if a.template == "default" else SHORT_TEMPLATE
        catalog, ds = load_amazon(a.data_dir, CATEGORY, splits=("test",), max_history=a.max_history, template=template)
        # "prefixes" slides over the full valid histories (the files hold at most 10 items)
        _, valid = load_amazon(a.data_dir, CATEGORY, splits=("valid",), template=template,
                               max_history=1000 if a.train_rows == "prefixes" else a.max_history)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    test = ds["test"]
    # every row's pairs, repeats of a user's overlapping rows included (unique=False), as the reported runs trained
    train = (title_prefix_pairs(valid["valid"], CATEGORY, a.max_history, template, unique=False)
             if a.train_rows == "prefixes" else valid["valid"])
    if a.sft_max_examples:
        train = train.select(range(min(a.sft_max_examples, len(train))))
    if a.rl_pool == "heldout":
        train, rl_pool = split_rl_pool(train, a.heldout_frac)
    else:
        rl_pool = train
    eval_idx = eval_subset(test, a.eval_users, a.dev_users, a.eval_seed, a.eval_split)
    test_eval = test.select(eval_idx)
    log(f"data: {len(train)} SFT rows (valid split), RL pool {len(rl_pool)} rows ({a.rl_pool}), {len(test_eval)} {a.eval_split} test users "
        f"of {len(test)}, catalog {catalog.num_items} items")

    # -- tokenizer ---------------------------------------------------------------------------------------------
    tok_cfg = {"vocab": a.vocab_size, "max_history": a.max_history, "n": len(train), "template": a.template,
               "rows": a.train_rows, **({"pool": a.heldout_frac} if a.rl_pool == "heldout" else {})}
    tok_dir = work / f"tokenizer-{config_key(tok_cfg)}"
    from transformers import PreTrainedTokenizerFast
    if (tok_dir / "tokenizer.json").exists() and not a.fresh:
        tok = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    else:
        t0 = time.time()
        tok = train_tokenizer(list(catalog.titles) + list(train["prompt"]), kind="bpe", vocab_size=a.vocab_size)
        tok.save_pretrained(tok_dir)
        log(f"tokenizer: {len(tok)} tokens trained in {time.time() - t0:.0f}s")
    trie = ItemTrie.from_catalog(catalog, tok)
    plen = [len(x) for x in tok(list(test_eval["prompt"]))["input_ids"]]
    title_len = [len(tok(f'"{t}"\n')["input_ids"]) + 1 for t in catalog.titles]
    log(f"tokens: prompt mean {statistics.fmean(plen):.0f} (max {max(plen)}), completion mean "
        f"{statistics.fmean(title_len):.1f} (max {max(title_len)}), trie max length {trie.max_length}")

    # -- SFT ---------------------------------------------------------------------------------------------------
    sft_cfg = {**tok_cfg, "loop": "lean", "hidden": a.hidden, "layers": a.layers, "heads": a.heads, "inter": a.intermediate,
               "epochs": a.sft_epochs, "lr": a.sft_lr, "bs": a.sft_batch, "seed": a.sft_seed}
    sft_dir, sft_info = cached_sft(work, sft_cfg, a.fresh)
    if sft_info is None:
        model = new_sft_model(tok, a)
        n_params = sum(p.numel() for p in model.parameters())
        log(f"SFT: model {n_params / 1e6:.2f}M parameters (hidden {a.hidden}, {a.layers} layers, {a.heads} heads)")
        t0 = time.time()
        heldout = encode_examples(tok, rl_pool.select(range(min(1000, len(rl_pool))))) if a.rl_pool == "heldout" else None
        steps, losses, heldout_curve = lean_sft(model, tok, encode_examples(tok, train), epochs=a.sft_epochs,
                                                lr=a.sft_lr, batch_size=a.sft_batch, seed=a.sft_seed, heldout=heldout)
        train_s = time.time() - t0
        log(f"SFT: {steps} steps in {train_s:.0f}s; loss curve {losses}; held-out {heldout_curve}")
        sft_info = {"hardware": hardware(a.device), "train_s": train_s, "steps": steps, "losses": losses,
                    "params": n_params, "n_train": len(train), "heldout_losses": heldout_curve}
        save_sft(model, tok, sft_dir, sft_info)
        del model

    # -- rows --------------------------------------------------------------------------------------------------
    # the users themselves are part of the key, so a cached result is never reused for another subset
    eval_tag = f"{a.eval_split}{len(test_eval)}-{config_key(eval_idx)}-b{a.eval_beams}"
    if a.device != "cpu":  # other kernels, other numerics: never mix with the CPU results
        eval_tag += f"-{a.device.split(':')[0]}"
    results: dict[str, list[dict]] = {}
    from transformers import AutoModelForCausalLM


    for name in rows:
        label, strategy, rewards = ROWS[name]
        results[name] = []
        for seed in ([None] if strategy is None else seeds):
            rl_cfg = {"rl": name, "steps": a.rl_steps, "P": a.prompts_per_step, "G": a.G, "lr": a.rl_lr,
                      "beta": a.beta, "warmup": a.warmup_ratio, "seed": seed}
            tag = f"{name}-{config_key(rl_cfg)}" if strategy else "sft"
            out_json = sft_dir / f"{tag}-{eval_tag}.json"
            if out_json.exists() and not a.fresh:
                res = json.loads(out_json.read_text())
                log(f"{label} seed {seed}: cached NDCG@10={res['metrics']['NDCG@10']:.4f}")
                results[name].append(res)
                continue
            log(f"{label} seed {seed}: start")
            if strategy is None:
                model = AutoModelForCausalLM.from_pretrained(sft_dir, dtype=torch.float32).to(a.device)
                res = run_eval(model, tok, test_eval, trie, a, out_json, {"row": name, "seed": None, "train_s": 0.0})
            elif strategy == "ce":
                # the supervised counterpart of an RL row: as many pool prompts, as many steps of as many prompts, the
                # RL rows' optimiser settings; tells a gain from the pool's extra data apart from a gain from RL
                model = AutoModelForCausalLM.from_pretrained(sft_dir, dtype=torch.float32).to(a.device)
                picks = random.Random(seed).sample(range(len(rl_pool)), min(len(rl_pool), a.rl_steps * a.prompts_per_step))
                t0 = time.time()
                lean_sft(model, tok, encode_examples(tok, rl_pool.select(picks)), epochs=1.0, lr=a.rl_lr,
                         batch_size=a.prompts_per_step, seed=seed, warmup=a.warmup_ratio, weight_decay=0.0,
                         max_grad_norm=ReReConfig.max_grad_norm, log_every=max(1, a.rl_steps // 4))
                res = run_eval(model, tok, test_eval, trie, a, out_json,
                               {"row": name, "seed": seed, "train_s": time.time() - t0})
            else:
                rl_args = ReReConfig(
                    output_dir=str(work / "rl-tmp"), per_device_train_batch_size=a.G * a.prompts_per_step,
                    num_generations=a.G, max_steps=a.rl_steps, learning_rate=a.rl_lr, beta=a.beta,
                    warmup_steps=a.warmup_ratio, sampling_strategy=strategy, rewards=rewards,
                    gradient_checkpointing=False, bf16=False, report_to=[], save_strategy="no", logging_steps=1,
                    use_cpu=a.device == "cpu", seed=seed, data_seed=seed, disable_tqdm=True,
                    ranking_metrics_ks=[1, 5, 10], dataloader_num_workers=0,
                )
                trainer = ReReTrainer(model=str(sft_dir), args=rl_args, train_dataset=rl_pool.select_columns(["prompt", "target"]),
                                      catalog=catalog, processing_class=tok)
                t0 = time.time()
                trainer.train()
                train_s = time.time() - t0
                curve = rl_curve(trainer)
                hist = curve["reward"]
                log(f"  RL {name}: {trainer.state.global_step} steps in {train_s:.0f}s; target_in_group "
                    f"{statistics.fmean(curve['rere/target_in_group'][: max(1, len(hist) // 4)]):.3f} (first quarter) -> "
                    f"{statistics.fmean(curve['rere/target_in_group'][-max(1, len(hist) // 4):]):.3f} (last quarter)")
                warmup = trainer.args.get_warmup_steps(a.rl_steps)
                res = run_eval(trainer.model, tok, test_eval, trie, a, out_json,
                               {"row": name, "seed": seed, "train_s": train_s, "curve": curve, "warmup_steps": warmup})
                del trainer
            results[name].append(res)

    # -- report ------------------------------------------------------------------------------------------------
    wall = time.time() - t_start
    table = render(results, rows, a, sft_info, len(test_eval), wall, statistics.fmean(plen))
    print(table)
    summary_path = work / f"summary-{eval_tag}.json"
    summary_path.write_text(json.dumps({k: [{"seed": r["seed"], "metrics": r["metrics"], "train_s": r["train_s"],
                                               "eval_s": r["eval_s"]} for r in v] for k, v in results.items()}, indent=1))
    if not a.no_results and a.eval_split == "report":
        section = a.results_section or f"repro_industrial_lr{a.rl_lr:g}"
        title = ("## Small-scale reproduction on Industrial_and_Scientific (`reproductions/repro_industrial.py`): "
                 f"`{section}`")
        write_section(PAGE, section, f"{title}\n\nRL learning rate {a.rl_lr:g}.\n\n" + table)
        log(f"wrote {PAGE}")
    log(f"total wall time {wall / 60:.1f} min")


# -----------------------------------------------------------------------------------------------------------------
GOALS = {  # other row -> (goal on ReRe's relative NDCG@10 difference to it, as text, threshold)
    "sft": ("at least +10% (the paper's claim at small scale)", 0.10),
    "grpo_sample": ("above GRPO with sampling", 0.0),
    "beam_rule": ("ranking reward at least as good as rule only", 0.0),
    "sft_ce": ("above the supervised control on the same prompts", 0.0),
}


def goal_checks(results, n_users: int) -> list[str]:
    """ReRe (row 4) against each other row: relative NDCG@10 difference, its paired standard error and the goal."""
    if "rere" not in results:
        return ["- (row 4 not run)"]
    mine = per_user_ndcg(results["rere"], n_users)
    lines = []
    for other, (goal, threshold) in GOALS.items():
        if other not in results:
            continue
        theirs = per_user_ndcg(results[other], n_users)
        base = statistics.fmean(theirs)
        dm, dse = paired_difference(mine, theirs)
        if base <= 0:
            continue
        rel, rel_se = dm / base, dse / base
        verdict = "met" if rel >= threshold else "not met"
        if threshold == 0.0 and abs(rel) < 2 * rel_se:
            verdict += " (point estimate; within 2 paired SE, so not significant)"
        elif threshold > 0 and rel >= threshold and rel < threshold + 2 * rel_se:
            verdict += " (point estimate; within 2 paired SE of the threshold)"
        lines.append(f"- vs {ROWS[other][0]}: {100 * rel:+.1f}% (paired SE {100 * rel_se:.1f}%); goal {goal}: {verdict}")
    return lines


def render(results, rows, a, sft_info, n_users, wall, mean_prompt_len) -> str:
    ks = DEFAULT_KS
    stage_s = sft_info["train_s"] + sum(r["train_s"] + r["eval_s"] for v in results.values() for r in v)
    warmups = sorted({r["warmup_steps"] for v in results.values() for r in v if "warmup_steps" in r})
    base_ndcg = per_user_ndcg(results["sft"], n_users) if "sft" in results else None
    base = results["sft"][0]["metrics"] if "sft" in results else None
    lines = []
    head = "| row | seeds | " + " | ".join(f"HR@{k}" for k in ks) + " | " + " | ".join(f"NDCG@{k}" for k in ks)
    head += " | NDCG@10 ± SE | Δ NDCG@10 vs SFT (rel.) | paired SE of Δ | RL train s |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for name in rows:
        runs = results[name]
        label = ROWS[name][0]
        cells = metric_cells(runs, [f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks])
        # standard error over users of NDCG@10 (of the seed-averaged per-user gain)
        per_user = per_user_ndcg(runs, n_users)
        m, se = mean_se(per_user)
        if base_ndcg is not None and name != "sft":
            dm, dse = paired_difference(per_user, base_ndcg)
            rel = f"{100 * dm / base['NDCG@10']:+.1f}%" if base["NDCG@10"] > 0 else "n/a"
            delta, dse_s = f"{dm:+.4f} ({rel})", f"{dse:.4f}"
        else:
            delta, dse_s = "—", "—"
        seeds = ",".join(str(r["seed"]) for r in runs) if runs[0]["seed"] is not None else "—"
        train_s = statistics.fmean(r["train_s"] for r in runs)
        lines.append(f"| {label} | {seeds} | " + " | ".join(cells) + f" | {m:.4f} ± {se:.4f} | {delta} | {dse_s} | "
                     f"{train_s:.0f} |")
    goal_lines = goal_checks(results, n_users)
    rel_lines = []
    if base is not None:
        for name in rows:
            if name == "sft":
                continue
            runs = results[name]
            parts = []
            for k in (5, 10, 20):
                v = statistics.fmean(r["metrics"][f"NDCG@{k}"] for r in runs)
                parts.append(f"NDCG@{k} {100 * (v / base[f'NDCG@{k}'] - 1):+.1f}%" if base[f"NDCG@{k}"] else "n/a")
                v = statistics.fmean(r["metrics"][f"HR@{k}"] for r in runs)
                parts.append(f"HR@{k} {100 * (v / base[f'HR@{k}'] - 1):+.1f}%" if base[f"HR@{k}"] else "n/a")
            rel_lines.append(f"- {ROWS[name][0]}: " + ", ".join(parts))
    curves = []
    for name in rows:
        for r in results[name]:
            c = r.get("curve")
            if c:
                q = max(1, len(c["reward"]) // 4)
                tig = c["rere/target_in_group"]
                hits = round(sum(tig) * a.prompts_per_step)
                curves.append(f"- {ROWS[name][0]}, seed {r['seed']}: groups containing the target {hits} of "
                              f"{len(tig) * a.prompts_per_step}; max KL {max(c['kl']):.4f}; target in group {statistics.fmean(tig[:q]):.3f} "
                              f"(first {q} steps) -> {statistics.fmean(tig[-q:]):.3f} (last {q}); group NDCG@10 "
                              f"{statistics.fmean(c['rere/NDCG@10'][:q]):.3f} -> {statistics.fmean(c['rere/NDCG@10'][-q:]):.3f}; "
                              f"distinct items/group {statistics.fmean(c['rere/distinct_items_per_group']):.1f}")
    pairs = ("every (history prefix -> next item) pair of the **valid** split's sequences (from 4532 users; the authors "
             "build their train split the same way; all these events precede the users' test targets)"
             if a.train_rows == "prefixes" else "the **valid** split (4532 users)")
    if a.rl_pool == "heldout":
        pool = (f": a seeded random {a.heldout_frac:.0%} of the pairs is held out of SFT as the **RL prompt pool**, SFT "
                f"trains on the other {sft_info.get('n_train')}; ")
    else:
        pool = f", {sft_info.get('n_train')} rows, used for SFT and as the RL prompt pool (the paper's setup); "
    heldout_curve = sft_info.get("heldout_losses")
    kept = (f" (weights kept after {sft_info['steps']} steps: the epoch with the lowest held-out loss)" if heldout_curve
            else f" ({sft_info['steps']} steps)")
    heldout = ("; held-out completion loss by epoch " + ", ".join(f"{e:g}: {v}" for e, v in heldout_curve)
               if heldout_curve else "")
    control = (f"- Control (row 1b): the SFT loss on {a.rl_steps * a.prompts_per_step} random pool prompts, {a.rl_steps} "
               f"steps of {a.prompts_per_step}, the RL rows' lr, schedule, clipping and weight decay (0).\n"
               if "sft_ce" in rows else "")
    where = " and ".join(sorted({r.get("hardware", "") for v in results.values() for r in v} - {""}))
    where = where or hardware(a.device)
    if sft_info.get("hardware", where) != where:
        where += f" (SFT: {sft_info['hardware']})"
    settings = (
        "- Data: Industrial_and_Scientific; " + pairs + pool
        + f"evaluation: a fixed random subset of **{n_users} test users** (seed {a.eval_seed}, the same for every row), "
        f"trie-constrained beam search with {a.eval_beams} beams (length_penalty 0). Prompt template '{a.template}'"
        f"{' (the authors history line + response header, no instruction preamble)' if a.template == 'short' else ''}, "
        f"max_history {a.max_history}; mean prompt length {mean_prompt_len:.0f} tokens.\n"
        f"- Tokenizer: byte-level BPE, {a.vocab_size} tokens, trained on the catalog titles and the SFT prompts.\n"
        f"- Model: Qwen2-style, from scratch, hidden {a.hidden}, {a.layers} layers, {a.heads} heads, MLP {a.intermediate}, "
        f"tied embeddings, {sft_info['params'] / 1e6:.2f}M parameters, fp32.\n"
        f"- SFT: completion-only cross-entropy (TRL SFTTrainer's objective, as a lean loop: `lean_sft`), AdamW, {a.sft_epochs:g} epochs{kept}, batch "
        f"{a.sft_batch}, lr {a.sft_lr:g} cosine (5% warmup), wd 0.01; {sft_info['train_s'] / 60:.1f} min. "
        f"Loss {sft_info['losses'][0][1] if sft_info['losses'] else '?'} -> {sft_info['losses'][-1][1] if sft_info['losses'] else '?'}"
        + heldout + ".\n"
        f"- RL (rows 2-5, identical budget): ReReTrainer, {a.rl_steps} steps x {a.prompts_per_step} prompts x G={a.G} "
        f"completions ({a.rl_steps * a.prompts_per_step} prompts from the RL pool, same order for a given seed), lr "
        f"{a.rl_lr:g} cosine (warmup_ratio {a.warmup_ratio:g}: {'/'.join(map(str, warmups)) or '-'} warmup steps), "
        f"beta {a.beta:g} ({reference_model_note(a.beta, a.rl_steps)}), "
        f"max grad norm 0.3, temperature 1.0, loss 'grpo', one optimisation step per generation; RL seeds {a.seeds}."
        + (" On CPU, settings that change no value (`benchmarks/_cpu.py`, checked by tests/test_benchmark_shims.py): "
           "TRL's fused log-prob head scores only completion positions (`cpu_compact_logprobs`) and folds its tiles "
           "in place (`lean_cpu_logprob_tiles`)" + (", and glibc's malloc keeps freed memory (`keep_freed_memory`)"
                                                    if "malloc" in a.shims else "") + "."
           if "lean" in a.shims else "") + "\n" + control +
        f"- Cells are means over seeds (± half the range where there are several seeds). 'NDCG@10 ± SE' is the "
        f"standard error over users; 'paired SE of Δ' is the standard error of the per-user difference to SFT.\n"
        f"- Time: {stage_s / 60:.1f} min of training + evaluation (SFT, RL and ranking eval, summed over the stages; "
        f"this invocation {wall / 60:.1f} min, less when stages were cached) on {where}.\n"
        f"- Run: `{a.command}`, written {time.strftime('%Y-%m-%d')} (a resumed run's cached stages are older)."
    )
    out = ["### Table (Industrial test subset)", "", *lines, "", "### Relative change over SFT (row 1)", "", *rel_lines,
           "", "### ReRe (row 4) against each row (NDCG@10, paired over users)", "", *goal_lines,
           "", "### RL training curves (per-step group statistics logged by ReReTrainer)", "",
           "Every step draws new pool prompts, so a change from the first to the last steps mixes what RL learned with "
           "how hard those prompts are. To see learning, compare a run with one at `--rl_lr 0` (same prompts, same "
           "order, the SFT model throughout).", "", *curves, "",
           "### Settings", "", settings]
    return "\n".join(out)


if __name__ == "__main__":
    main()
