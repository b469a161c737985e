"""SID quality: semantic IDs built by trl-rere (`trl_rere.data.build_sids`) against MiniOneRec's published SIDs, on Industrial.

Every SID set covers the same 3,686 items, the same valid/test rows and users (MiniOneRec's files); only the item ->
SID map differs. Each set gets the SFT recipe of `reproductions/repro_sid.py` (its defaults and functions: dev users,
BPE tokenizer + code tokens, a small Qwen2-style model from scratch, completion-only SFT with early stopping on the dev
loss) with `--seeds` SFT seeds, then trie-constrained beam search (50 beams) ranks the test users. Reported: HR@10
and NDCG@10 (mean over seeds, ± their spread), and each set's per-user NDCG@10 / HR@10 (averaged over seeds) paired
with MiniOneRec's: mean difference and its standard error.

SID sets
  minionerec       MiniOneRec's published index (`../shared/data/minionerec/index/*.index.json`)
  tfidf-rqkmeans   TF-IDF over title, description, brand and categories (`index/*.item.json`) -> SVD 256 ->
                   residual k-means 3 x 256, collisions moved to the nearest free last-level code
  tfidf-balanced   the same with balanced residual k-means (`k-means-constrained`)

Run:  python reproductions/sid_quality.py                     (3 SFT seeds per set; writes reproductions/sid_quality.md)
      python reproductions/sid_quality.py --seeds 0           (one seed)
      python reproductions/sid_quality.py --quick             (a tiny configuration; writes no page)
      python reproductions/sid_quality.py --build_only        (only the SID folders, under --work_dir)
Results are cached per (set, seed) under --work_dir, so seeds and sets can run in separate invocations.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


from reproductions import _common as common  # noqa: E402
from reproductions import repro_sid  # noqa: E402
from reproductions._common import config_key as _key, hardware, lean_sft, log, paired_difference  # noqa: E402

from trl_rere.data import load_amazon  # noqa: E402
from trl_rere.metrics import ranking_metrics  # noqa: E402
from trl_rere.trie import ItemTrie  # noqa: E402

CATEGORY = "Industrial_and_Scientific"
PAGE = REPO / "reproductions" / "sid_quality.md"
SETS = {
    "minionerec": "MiniOneRec's published SIDs",
    "tfidf-rqkmeans": "trl-rere: TF-IDF + residual k-means",
    "tfidf-balanced": "trl-rere: TF-IDF + balanced residual k-means",
    "tfidf-coarse": "trl-rere: TF-IDF + residual k-means, 64 first-level codes",
}
METHOD = {"tfidf-rqkmeans": "rqkmeans", "tfidf-balanced": "rqkmeans-balanced", "tfidf-coarse": "rqkmeans"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "minionerec"))
    p.add_argument("--work_dir", default=str(REPO / "reproductions" / "_work" / "sid_quality"))
    p.add_argument("--sets", default="minionerec,tfidf-rqkmeans,tfidf-balanced", help=f"from {', '.join(SETS)}")
    p.add_argument("--seeds", default="0,1,2", help="SFT seeds (comma list)")
    p.add_argument("--sid_seed", type=int, default=0, help="seed of the SID construction")
    p.add_argument("--levels", type=int, default=3, help="levels of trl-rere's SIDs")
    p.add_argument("--codebook_size", type=int, default=256, help="codes per level of trl-rere's SIDs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny SFT and evaluation (repro_sid's --quick); no page")
    p.add_argument("--eval_users", type=int, default=None, help="test users ranked (a seeded sample; default: "
                   "repro_sid's, all 4,533)")
    p.add_argument("--sft_epochs", type=float, default=None, help="at most this many SFT epochs (default: repro_sid's)")
    p.add_argument("--eval_batch", type=int, default=None, help="prompts per beam search (default: repro_sid's)")
    p.add_argument("--build_only", action="store_true", help="build the SID folders and stop")
    p.add_argument("--report_only", action="store_true", help="merge cached results, compute nothing")
    a = p.parse_args(argv)
    # the SFT recipe: repro_sid's own defaults (or its --quick configuration)
    # pinned to the recipe sid_quality.md was measured with (300 dev users, a 512-token BPE of the wording alone)
    a.recipe = repro_sid.parse_args((["--quick"] if a.quick else []) + ["--dev_users", "300", "--vocab_size", "512"])
    a.recipe.device, a.recipe.threads = a.device, a.threads
    if a.eval_users is not None:
        a.recipe.eval_users = a.eval_users
    if a.sft_epochs is not None:
        a.recipe.sft_epochs = a.sft_epochs
    if a.eval_batch is not None:
        a.recipe.eval_batch = a.eval_batch
    if a.quick:
        a.work_dir = str(Path(a.work_dir) / "quick")
    return a


# -- SID folders ------------------------------------------------------------------------------------------------------
def title_layout(src: Path, dst: Path) -> Path:
    """MiniOneRec's folder as a title layout (info `title<TAB>item_id`, the same split CSVs), the input of
    `trl_rere.data.build_sids`."""
    info = next((src / "info").glob(f"{CATEGORY}_5_*.txt"))
    (dst / "info").mkdir(parents=True, exist_ok=True)
    with open(info, encoding="utf-8") as f, open(dst / "info" / info.name, "w", encoding="utf-8") as out:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            out.write("\t".join(fields[1:]) + "\n")
    for split in ("valid", "test"):
        (dst / split).mkdir(exist_ok=True)
        for csv_file in (src / split).glob(f"{CATEGORY}_5_*.csv"):
            (dst / split / csv_file.name).write_bytes(csv_file.read_bytes())
    return dst


def build_sets(a, names) -> dict[str, tuple[Path, dict | None]]:
    """{set: (SID folder, SID stats)}; trl-rere's folders are built once per seed and reused."""
    from trl_rere.data.build_sids import make_sid_dataset

    work = Path(a.work_dir)
    folders = {}
    for name in names:
        if name == "minionerec":
            folders[name] = (Path(a.data_dir), None)
            continue
        out = work / f"sids-{name}-{a.levels}x{a.codebook_size}-seed{a.sid_seed}"
        stats_file = out / "sid_stats.json"
        if not stats_file.exists():
            src = title_layout(Path(a.data_dir), work / "title-layout")
            t0 = time.time()
            meta = Path(a.data_dir) / "index" / f"{CATEGORY}.item.json"
            sizes = a.codebook_size
            if name == "tfidf-coarse":  # a coarse first level, as MiniOneRec's index has (48 first codes in use)
                sizes = [max(2, a.codebook_size // 4)] + [a.codebook_size] * (a.levels - 1)
            stats = make_sid_dataset(src, CATEGORY, out, method=METHOD[name], encoder="tfidf", levels=a.levels,
                                     codebook_size=sizes, seed=a.sid_seed,
                                     metadata=meta if meta.exists() else None)
            stats_file.write_text(json.dumps({**asdict(stats), "build_s": time.time() - t0}))
            log(f"{name}: {stats.to_text()} ({time.time() - t0:.0f}s)")
        folders[name] = (out, json.loads(stats_file.read_text()))
    return folders


def published_stats(folder: Path) -> dict:
    """Collisions and code usage of MiniOneRec's own index (its SIDs are not all distinct)."""
    index = json.loads((folder / "index" / f"{CATEGORY}.index.json").read_text())
    sids = ["".join(v) for v in index.values()]
    levels = len(next(iter(index.values())))
    return {"num_items": len(sids), "collision_rate": 1 - len(set(sids)) / len(sids),
            "usage_per_level": [len({v[lv] for v in index.values()}) / 256 for lv in range(levels)]}


# -- SFT + evaluation -------------------------------------------------------------------------------------------------
def run_one(name: str, folder: Path, seed: int, a) -> dict:
    """SFT with repro_sid's recipe on one SID set and seed, then the test ranking; cached as JSON."""
    r = a.recipe
    r.sft_seed = seed
    work = Path(a.work_dir) / name
    work.mkdir(parents=True, exist_ok=True)
    catalog, ds = load_amazon(folder, CATEGORY, splits=("valid", "test"), item_format="sid",
                              max_history=r.max_history)
    train, dev = repro_sid.split_dev(ds["valid"], r.dev_users, r.eval_seed)
    if r.sft_max_pairs:
        train = train.select(range(min(r.sft_max_pairs, len(train))))
    test = ds["test"]
    if r.eval_users:
        test = test.select(sorted(random.Random(r.eval_seed).sample(range(len(test)), r.eval_users)))
    cfg = {"set": name, "seed": seed, "hidden": r.hidden, "layers": r.layers, "epochs": r.sft_epochs, "lr": r.sft_lr,
           "bs": r.sft_batch, "n": len(train), "dev": r.dev_users, "test": _key(list(test["user_id"])),
           "beams": r.eval_beams, "codes": _key(sorted(catalog.titles))}
    out = work / f"result-{_key(cfg)}.json"
    if out.exists():
        return json.loads(out.read_text())
    if a.report_only:
        return None
    tok, _ = repro_sid.build_tokenizer(r, catalog, None, work)
    trie = ItemTrie.from_catalog(catalog, tok, item_format="sid")
    model = common.new_sft_model(tok, r)
    t0 = time.time()
    steps, _, heldout = lean_sft(model, tok, common.encode_examples(tok, train, "sid"), epochs=r.sft_epochs,
                                 lr=r.sft_lr, batch_size=r.sft_batch, seed=seed,
                                 heldout=common.encode_examples(tok, dev, "sid"))
    sft_s = time.time() - t0
    log(f"{name} seed {seed}: SFT {sft_s:.0f}s, kept step {steps}")
    model.eval()
    return common.run_eval(model, tok, test, trie, r, out, {"set": name, "seed": seed, "sft_s": sft_s, "steps": steps,
                                                        "heldout": heldout, "n_test": len(test)})


def per_user(runs, metric: str) -> list[float]:
    """Each test user's NDCG@10 or HR@10, averaged over the runs (seeds)."""
    n = len(runs[0]["ranks"])
    def fn(rank):  # the library's metrics of one user's rank
        return ranking_metrics([rank], ks=(10,))[metric]
    return [statistics.fmean(fn(run["ranks"][u]) for run in runs) for u in range(n)]


def render(results, stats, a) -> str:
    lines = [("| SID set | collisions before resolution | codebook usage a/b/c | SFT seeds | HR@10 | NDCG@10 | "
             "Δ HR@10 vs MiniOneRec (paired SE) | Δ NDCG@10 vs MiniOneRec (paired SE) | SFT s / eval s (mean) |"),
             "|---|---|---|---|---|---|---|---|---|"]
    base = results.get("minionerec")
    for name, runs in results.items():
        st = stats[name]
        usage = "/".join(f"{u:.0%}" for u in st["usage_per_level"])
        cells = [SETS[name], f"{st['collision_rate']:.1%}" + (" (kept: SIDs shared)" if name == "minionerec" else
                                                              " (resolved)"), usage, ",".join(str(r["seed"]) for r in runs)]
        for metric in ("HR@10", "NDCG@10"):
            vals = [r["metrics"][metric] for r in runs]
            spread = f" ±{statistics.stdev(vals):.4f}" if len(vals) > 1 else ""
            cells.append(f"{statistics.fmean(vals):.4f}{spread}")
        for metric in ("HR@10", "NDCG@10"):
            if base is None or name == "minionerec":
                cells.append("—")
                continue
            d, se = paired_difference(per_user(runs, metric), per_user(base, metric))
            verdict = " **better by > 2 SE**" if d > 2 * se else (" worse by > 2 SE" if d < -2 * se else "")
            cells.append(f"{d:+.4f} ({se:.4f}){verdict}")
        cells.append(f"{statistics.fmean(r['sft_s'] for r in runs):.0f} / "
                     f"{statistics.fmean(r['eval_s'] for r in runs):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    n = next(iter(results.values()))[0]["n_test"] if results else 0
    hw = next(iter(results.values()))[0].get("hardware", hardware(a.device)) if results else hardware(a.device)
    lines += ["", (f"- {n} test users (MiniOneRec's test split), the same users for every set; HR@10 / NDCG@10 are "
              f"means over the SFT seeds (± their standard deviation); the paired differences use each user's metric "
              f"averaged over the seeds."),
              (f"- SFT recipe: `reproductions/repro_sid.py`'s (model {a.recipe.hidden} wide x {a.recipe.layers} layers "
              f"from scratch, at most {a.recipe.sft_epochs:g} epochs, lr {a.recipe.sft_lr:g}, batch "
              f"{a.recipe.sft_batch}, {a.recipe.dev_users} dev users for early stopping), {a.recipe.eval_beams} beams."),
              f"- Hardware: {hw}."]
    if a.eval_users is not None or a.sft_epochs is not None:
        full = repro_sid.parse_args([])
        lines.append(f"- Reduced run: {a.recipe.sft_epochs:g} SFT epochs (repro_sid: at most {full.sft_epochs:g}, "
                     f"best epoch kept), {n} test users (repro_sid: all); not the full recipe.")
    built = [f"{n} {st['build_s']:.0f}s" for n, st in stats.items() if "build_s" in st]
    if built:
        lines.append(f"- SID construction (TF-IDF + SVD 256 + quantisation + collision resolution + writing the "
                     f"layout): {', '.join(built)}.")
    return "\n".join(lines)


def main(argv=None):
    a = parse_args(argv)
    common.quiet_torch(a.threads)
    names = [s.strip() for s in a.sets.split(",") if s.strip()]
    unknown = [s for s in names if s not in SETS]
    if unknown:
        sys.exit(f"unknown SID set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")
    t_start = time.time()
    folders = build_sets(a, names)
    if a.build_only:
        return
    stats = {n: (st if st is not None else published_stats(f)) for n, (f, st) in folders.items()}
    results = {}
    for name in names:
        runs = [run_one(name, folders[name][0], int(s), a) for s in a.seeds.split(",")]
        runs = [r for r in runs if r is not None]
        if runs:
            results[name] = runs
    table = render(results, stats, a)
    print(table)
    if not a.quick:
        args = [x for x in (sys.argv[1:] if argv is None else argv) if x != "--report_only"]  # the computing command
        cmd = "python reproductions/sid_quality.py " + " ".join(args)
        PAGE.write_text(f"# SID quality: trl-rere's semantic IDs against MiniOneRec's (Industrial)\n\n"
                        f"`{cmd.strip()}`, {datetime.date.today()}, SID construction on 2 CPU cores, 24 GiB.\n\n"
                        f"{table}\n")
        log(f"wrote {PAGE}")
    log(f"total wall time {(time.time() - t_start) / 60:.1f} min")
    return results


if __name__ == "__main__":
    main()
