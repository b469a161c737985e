"""Which items the SID reproduction's models put in their top 10: how popular (how often an SFT target), how many
distinct items over all users, and how often the most frequent first choice recurs.

It reads models that `reproductions/repro_sid.py` trained and cached (the SFT checkpoint folder and its
`<row>-<hash>-model` subfolders), ranks a seeded sample of the test users with the same 50-beam constrained search, and
writes the table to reproductions/sid_top10_popularity.md. It explains the `repro_sid` popularity table: a row that
loses on popular targets and gains on rare ones should show fewer popular items in its top 10.

Run (after repro_sid.py; model folder names are those in its work folder):

    python reproductions/sid_top10_popularity.py --sft_dir reproductions/_work/sid/sft-6301c89db4 \\
        --models rere-141f842730-model,beam_rule-a9d4214d3e-model,grpo_sample-39a97b2bc3-model
"""

from __future__ import annotations

import argparse
import collections
import random
import statistics
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: trl_rere, benchmarks, reproductions

import torch  # noqa: E402

from benchmarks._results import write_section  # noqa: E402
from reproductions._common import CATEGORY, REPO, hardware  # noqa: E402
from reproductions.repro_sid import popularity_thirds, sft_pairs  # noqa: E402
from trl_rere.data import load_amazon  # noqa: E402
from trl_rere.evaluation import evaluate_ranking  # noqa: E402
from trl_rere.trie import ItemTrie  # noqa: E402


PAGE = REPO / "reproductions" / "sid_top10_popularity.md"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sft_dir", required=True, help="repro_sid.py's SFT checkpoint folder (tokenizer and SFT model)")
    p.add_argument("--models", required=True, help="comma list of model folders inside --sft_dir")
    p.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--dev_users", type=int, default=1000, help="as repro_sid.py: the SFT pairs exclude them")
    p.add_argument("--sft_data", choices=("valid", "valid+earlier"), default="valid+earlier",
                   help="as repro_sid.py: the SFT pairs, whose targets define popularity")
    p.add_argument("--eval_seed", type=int, default=1234, help="repro_sid.py's dev split seed")
    p.add_argument("--users", type=int, default=600, help="test users sampled (seed --sample_seed)")
    p.add_argument("--sample_seed", type=int, default=7)
    p.add_argument("--beams", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no_results", action="store_true", help="do not write reproductions/sid_top10_popularity.md")
    return p.parse_args(argv)


def top10_summary(predictions: list[list[str]], target_counts: collections.Counter, popular_from: int) -> dict:
    """Share of popular items (an SFT target >= `popular_from` times) among each user's top 10, their mean SFT-target
    count, the distinct items over all top 10s, and how many users share the most frequent first choice.

    Example:

    ```python
    >>> import collections
    >>> s = top10_summary([["a", "b"], ["a", "c"]], collections.Counter({"a": 9, "b": 1}), popular_from=5)
    >>> s["popular_share"], s["mean_count"], s["distinct"], s["top1_most_common"]
    (0.5, 4.75, 3, 2)

    ```
    """
    tops = [row[:10] for row in predictions if row]
    return {
        "popular_share": statistics.fmean(statistics.fmean(target_counts[t] >= popular_from for t in r) for r in tops),
        "mean_count": statistics.fmean(statistics.fmean(target_counts[t] for t in r) for r in tops),
        "distinct": len({t for r in tops for t in r}),
        "top1_most_common": collections.Counter(r[0] for r in tops).most_common(1)[0][1],
    }


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sft_dir = Path(a.sft_dir)
    names = [m.strip() for m in a.models.split(",") if m.strip()]
    missing = [m for m in names if not (sft_dir / m / "config.json").is_file()]
    if missing or not (sft_dir / "config.json").is_file():
        sys.exit(f"not a trained model folder in {sft_dir}: {', '.join(missing) or '(the SFT checkpoint itself)'}")
    catalog, ds = load_amazon(a.data_dir, CATEGORY, splits=("valid", "test"), item_format="sid",
                              max_history=10)
    train = sft_pairs(ds["valid"], ds["test"], a.dev_users, a.eval_seed, a.sft_data)[0]
    counts = collections.Counter(train["target"])
    _, popular_from = popularity_thirds([counts[t] for t in ds["test"]["target"]])
    test = ds["test"].select(sorted(random.Random(a.sample_seed).sample(range(len(ds["test"])), a.users)))
    tok = AutoTokenizer.from_pretrained(sft_dir)
    trie = ItemTrie.from_catalog(catalog, tok, item_format="sid")

    lines = ["| model | popular items in the top 10 | mean SFT-target count of the top 10 | distinct items in all "
             "top 10s | users sharing the most frequent first choice | NDCG@10 (these users) |", "|---|---|---|---|---|---|"]
    t0 = time.time()
    for name in ["sft", *names]:
        model = AutoModelForCausalLM.from_pretrained(sft_dir if name == "sft" else sft_dir / name).eval()
        metrics, rows = evaluate_ranking(model, tok, test, trie, num_beams=a.beams, batch_size=10,
                                         show_progress=False, return_predictions=True)
        s = top10_summary([row["predictions"] for row in rows], counts, popular_from)
        lines.append(f"| {name} | {s['popular_share']:.3f} | {s['mean_count']:.1f} | {s['distinct']} | "
                     f"{s['top1_most_common']} | {metrics['NDCG@10']:.4f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    body = (f"## Top-10 popularity of the SID reproduction's models (`reproductions/sid_top10_popularity.py`)\n\n{table}\n\n"
            f"Popular: an SFT target at least {popular_from} times (the popular third of the test users' targets); "
            f"{a.users} test users sampled with seed {a.sample_seed}, {a.beams} beams; models from `{sft_dir.name}`.\n\n"
            f"Run: `python reproductions/sid_top10_popularity.py --sft_dir {a.sft_dir} --models {a.models}`, "
            f"{hardware('cpu')}, {time.strftime('%Y-%m-%d')}, {(time.time() - t0) / 60:.0f} min.")
    print(table)
    if not a.no_results:
        write_section(PAGE, "sid_top10_popularity", body)


if __name__ == "__main__":
    main()
