"""The title reproduction (reproductions/repro_industrial.py) and the helpers it shares (reproductions/_common.py): its
statistics, and one end-to-end run at --quick size on the real Industrial data, so that a change in TRL or in the
package that breaks the script fails here."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest


from reproductions import _common as repro


REPO = Path(__file__).resolve().parents[1]


def test_per_user_ndcg_counts_ranks_zero_to_nine():
    runs = [{"ranks": [0, 1, 9, 10, None]}]
    # 11th place is outside the top 10; None: the target is not among the beams
    assert repro.per_user_ndcg(runs, 5) == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0])


def test_heldout_pool_is_a_seeded_disjoint_fraction_of_the_pairs():
    from datasets import Dataset

    pairs = Dataset.from_list([{"prompt": f"p{i}", "target": f"t{i}"} for i in range(200)])
    sft, pool = repro.split_rl_pool(pairs, 0.15)
    assert len(pool) == 30 and len(sft) == 170
    assert set(sft["prompt"]).isdisjoint(pool["prompt"])
    assert sorted([*sft["prompt"], *pool["prompt"]]) == sorted(pairs["prompt"])  # nothing lost
    again_sft, again_pool = repro.split_rl_pool(pairs, 0.15)
    assert list(again_pool["prompt"]) == list(pool["prompt"]) and list(again_sft["prompt"]) == list(sft["prompt"])
    assert list(repro.split_rl_pool(pairs, 0.15, seed=1)[1]["prompt"]) != list(pool["prompt"])
    assert list(pool["prompt"]) != list(pairs["prompt"][:30])  # drawn at random, not the first pairs
    with pytest.raises(SystemExit, match="heldout_frac"):
        repro.split_rl_pool(pairs, 0.001)


def test_paired_difference_is_mean_and_standard_error_of_per_user_differences():
    mine, theirs = [1.0, 0.5, 0.0, 0.25], [0.5, 0.5, 0.25, 0.0]
    mean, se = repro.paired_difference(mine, theirs)
    # differences 0.5, 0, -0.25, 0.25: mean 0.125, sample variance 0.3125 / 3
    assert mean == pytest.approx(0.125)
    assert se == pytest.approx(math.sqrt(0.3125 / 3) / 2)


def test_per_user_ndcg_averages_a_rows_seeds():
    runs = [{"ranks": [0, None, 3]}, {"ranks": [1, 2, None]}]
    got = repro.per_user_ndcg(runs, 3)
    assert got == pytest.approx([(1 + 1 / math.log2(3)) / 2, 0.5 / math.log2(4), 0.5 / math.log2(5)])


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, data_dir):
    work = tmp_path_factory.mktemp("repro")
    results_md = REPO / "reproductions" / "industrial_titles.md"
    before = results_md.read_bytes() if results_md.exists() else None
    proc = subprocess.run(
        [sys.executable, str(REPO / "reproductions" / "repro_industrial.py"), "--quick", "--data_dir", str(data_dir),
         "--work_dir", str(work), "--threads", "1"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = results_md.read_bytes() if results_md.exists() else None
    return work / "quick", proc.stdout, before == after


def test_quick_run_reports_every_row_with_consistent_metrics(quick_run):
    work, stdout, results_untouched = quick_run
    assert results_untouched  # --quick never writes the results page
    (summary_path,) = work.glob("summary-*.json")
    summary = json.loads(summary_path.read_text())
    assert list(summary) == ["sft", "sft_ce", "grpo_sample", "beam_rule", "rere"]
    for row, runs in summary.items():
        assert len(runs) == 1
        metrics = runs[0]["metrics"]
        assert metrics["num_examples"] == 16
        for k_small, k_large in zip(repro.DEFAULT_KS, repro.DEFAULT_KS[1:]):
            assert metrics[f"HR@{k_small}"] <= metrics[f"HR@{k_large}"], row
        for k in repro.DEFAULT_KS:
            assert 0.0 <= metrics[f"NDCG@{k}"] <= metrics[f"HR@{k}"] <= 1.0, row
    for label in ("1. SFT only", "2. SFT + GRPO", "3. SFT + ReRe sampling", "4. SFT + ReRe (beam, rule + ranking)"):
        assert f"| {label}" in stdout


def test_quick_run_logs_one_curve_point_per_rl_step(quick_run):
    work, _, _ = quick_run
    rows = {}
    for path in work.glob("sft-*/*-report*.json"):
        record = json.loads(path.read_text())
        rows[record["row"]] = record
    assert set(rows) == {"sft", "sft_ce", "grpo_sample", "beam_rule", "rere"}
    for row in ("grpo_sample", "beam_rule", "rere"):
        curve = rows[row]["curve"]
        assert len(curve["rere/target_in_group"]) == 2 and len(curve["kl"]) == 2  # --quick: 2 RL steps
        assert len(rows[row]["ranks"]) == 16
    for row in ("beam_rule", "rere"):  # one beam search per prompt: G=4 distinct items in every group
        assert rows[row]["curve"]["rere/distinct_items_per_group"] == [4.0, 4.0]
