"""The semantic-ID reproduction script (reproductions/repro_sid.py): its dev split, and --quick runs on the real
MiniOneRec data, computed in two invocations (rows and seeds apart) whose results merge into one table."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch


from reproductions import repro_sid
from trl_rere import synthetic_sid_dataset


REPO = Path(__file__).resolve().parents[1]


def test_dev_users_last_event_is_held_out_of_the_sft_pairs():
    _, valid = synthetic_sid_dataset(num_items=24, num_users=40, history_len=(1, 5), seed=3)
    pairs, dev = repro_sid.split_dev(valid, 7, seed=0)
    assert len(dev) == 7
    assert len(pairs) == sum(len(h) for h in valid["history_titles"]) - 7
    dev_users = set(dev["user_id"])
    trained = {(p["user_id"], p["prompt"], p["target"]) for p in pairs}
    for row in valid:
        # every user's own (history -> target) pair is trained on unless the user is a dev user
        assert ((row["user_id"], row["prompt"], row["target"]) in trained) == (row["user_id"] not in dev_users)
    for row in dev:  # a dev user's earlier pairs are still trained on
        assert len([p for p in pairs if p["user_id"] == row["user_id"]]) == len(row["history_titles"]) - 1


def sliding_rows(valid):
    """MiniOneRec's layout: one row per event of a user, each with the events before it (overlapping windows)."""
    from datasets import Dataset

    rows = []
    for ex in valid:
        sids = list(ex["history_titles"]) + [ex["target"]]
        ids = list(ex["history_item_ids"]) + [ex["target_item_id"]]
        for k in range(1, len(ids)):
            rows.append({**ex, "history_titles": sids[:k], "history_item_ids": ids[:k], "target": sids[k],
                         "target_item_id": ids[k], "prompt": f"{ex['user_id']}:{k}"})
    return Dataset.from_list(rows)


def test_overlapping_rows_give_each_pair_once_and_hold_out_each_dev_users_latest_event():
    _, valid = synthetic_sid_dataset(num_items=24, num_users=30, history_len=(2, 6), seed=4)
    rows = sliding_rows(valid)
    assert len(rows) > len(valid)  # several rows per user, as in the real files
    pairs, dev = repro_sid.split_dev(rows, 5, seed=0)
    assert len(set(dev["user_id"])) == 5  # five users, not five rows (of possibly one user)
    key = lambda r: (r["user_id"], tuple(r["history_titles"]), r["target"])  # noqa: E731
    # each distinct pair once: the overlapping rows repeat every earlier pair of their user
    assert len({key(p) for p in pairs}) == len(pairs) == sum(len(h) for h in valid["history_titles"]) - 5
    trained = {key(p) for p in pairs}
    for d in dev:
        assert key(d) not in trained
        latest = valid[valid["user_id"].index(d["user_id"])]
        assert d["target"] == latest["target"]  # the user's last event, not an earlier row of theirs


@pytest.fixture(scope="module")
def quick(tmp_path_factory, data_dir):
    work = tmp_path_factory.mktemp("repro_sid")
    results_md = REPO / "reproductions" / "sid.md"
    before = results_md.read_bytes() if results_md.exists() else None

    def run(*extra):
        proc = subprocess.run(
            [sys.executable, str(REPO / "reproductions" / "repro_sid.py"), "--quick", "--data_dir", str(data_dir),
             "--work_dir", str(work), "--threads", "1", *extra],
            capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    # every row, seed 0, every grid lr on the reported rows, SFT's seed spread and the beam-error check
    first = run("--test_every_lr", "--dev_points", "4", "--rows", ",".join([*repro_sid.ROWS, *repro_sid.TASKS]))
    second = run("--rows", "rere", "--seeds", "1", "--dev_points", "4")  # one more seed of one row, apart
    after = results_md.read_bytes() if results_md.exists() else None
    return work / "quick", first, second, before == after


def base_sft_dir(work):
    """The SFT checkpoint every row but the +align ones starts from (the only one with control runs)."""
    (sft_dir,) = [p for p in work.glob("sft-*") if p.is_dir() and list(p.glob("sft_ce-*"))]
    return sft_dir


def test_quick_run_reports_every_row(quick):
    work, first, _, results_untouched = quick
    assert results_untouched  # --quick never writes the results page
    for label, _, _ in repro_sid.ROWS.values():
        assert f"| {label} |" in first
    assert "HR@10 0.1586, NDCG@10 0.1167" in first  # MiniOneRec's published numbers, for scale


def test_rows_and_seeds_run_apart_merge_into_one_table(quick):
    work, _, second, _ = quick
    (summary_path,) = work.glob("summary-*.json")
    summary = json.loads(summary_path.read_text())  # written by the second invocation
    assert list(summary) == list(repro_sid.ROWS)
    assert [r["seed"] for r in summary["rere"]] == [0, 1]  # seed 0 from the first run, seed 1 from the second
    assert all([r["seed"] for r in summary[row]] == [0] for row in ("sft_ce", "grpo_sample", "beam_rule"))
    for runs in summary.values():
        for r in runs:
            m = r["metrics"]
            assert m["num_examples"] == 12
            for k in repro_sid.DEFAULT_KS:
                assert 0.0 <= m[f"NDCG@{k}"] <= m[f"HR@{k}"] <= 1.0
    # the second invocation trained only row 4 seed 1; everything else came from the first invocation's results
    assert second.count(": start") == 1 and "4. SFT + ReRe (beam, rule + ranking) lr" in second


def test_each_rl_row_is_tuned_on_dev_users_over_the_same_grid(quick):
    work, first, _, _ = quick
    sft_dir = base_sft_dir(work)
    dev = [json.loads(p.read_text()) for p in sft_dir.glob("*-dev*.json")]
    grids = {}
    for r in dev:
        grids.setdefault(r["row"], set()).add(r["lr"])
        assert r["metrics"]["num_examples"] == 8  # --quick: 8 dev users
    # the SFT checkpoint is scored on dev too: step 0 of every row's dev curve
    assert grids == {"sft": {None}, **{row: {1e-4, 1e-3} for row in ("sft_ce", "grpo_sample", "beam_rule", "rere")}}
    # the run at the chosen lr and the tuning seed is trained once and evaluated on dev and on the reported users
    assert first.count("  RL ") == 3 * 2 + 1  # + ReRe after the alignment SFT, at the lr dev chose for ReRe
    assert len(list(sft_dir.glob("*-model"))) == 4 * 2 + 1  # + row 4's seed 1 from the second invocation
    for r in dev:
        if r["row"] in ("grpo_sample", "beam_rule", "rere"):
            assert len(r["curve"]["rere/target_in_group"]) == 2  # --quick: 2 RL steps
        if r["row"] in ("beam_rule", "rere"):  # one beam search per prompt: G=4 distinct items in every group
            assert r["curve"]["rere/distinct_items_per_group"] == [4.0, 4.0]


def test_every_rl_run_records_its_dev_curve(quick):
    work, first, _, _ = quick
    sft_dir = base_sft_dir(work)
    runs = {p.parent.name: json.loads(p.read_text()) for p in sft_dir.glob("*-model/run.json")}
    rl = {name: r for name, r in runs.items() if not name.startswith("sft_ce-")}
    assert len(rl) == 3 * 2 + 1  # three RL rows x two lrs, and the second invocation's seed
    for r in rl.values():
        # --quick: 2 steps and the default 4 dev points, so the dev users are ranked after each step
        assert [step for step, _ in r["curve"]["dev"]] == [1, 2]
        assert all(0.0 <= v <= 1.0 for _, v in r["curve"]["dev"])
        assert r["train_s"] > 0  # the dev evaluations' time is taken out, not the training's
    assert "- SFT (step 0 of every run): dev NDCG@10" in first and "dev NDCG@10 by step 1: " in first


def test_every_lr_diagnostic_ranks_the_reported_users_with_each_grid_lr(quick):
    work, first, _, _ = quick
    sft_dir = base_sft_dir(work)
    test_runs = [json.loads(p.read_text()) for p in sft_dir.glob("*-test*.json")
                 if not p.name.startswith("sft-") and "-exact" not in p.name]  # not the beam-error check's ranks
    by_row = {}
    for r in test_runs:
        if r["seed"] == 0:
            by_row.setdefault(r["row"], set()).add(r["lr"])
    assert by_row == {row: {1e-4, 1e-3} for row in ("sft_ce", "grpo_sample", "beam_rule", "rere")}
    block = first.split("never used to choose")[1].split("\n\n")[0].splitlines()[1:]
    assert len(block) == 4  # one line per RL row (and the control), each with both lrs and a paired SE
    assert all(ln.count("lr ") == 2 and ln.count("SE ") == 2 for ln in block)


def test_popularity_breakdown_splits_users_by_how_often_sft_saw_their_target():
    counts = [0, 1, 5, 6, 20, 30]  # two users per third
    sft = {"seed": None, "ranks": [None, None, 1, 1, 0, 0]}
    row = [{"seed": 0, "ranks": [0, None, 1, 1, None, 0]}, {"seed": 1, "ranks": [0, None, 1, 1, None, None]}]
    lines = repro_sid.popularity_breakdown({"sft": [sft], "rere": row}, 6, counts)
    header, _, base, rere = lines
    assert "< 5 times; 2 users" in header and "5-19 times; 2 users" in header and ">= 20 times; 2 users" in header
    gain, same, loss = [c.strip() for c in rere.split("|")[2:5]]
    assert base.split("|")[2].strip() == "0.0000" and base.split("|")[4].strip() == "1.0000"
    # rare: one user from nothing to rank 1 in both seeds (+0.5 over the two users); middle: unchanged; popular: the
    # first user lost in both seeds, the second in one of two (-(1 + 0.5) / 2)
    assert gain.startswith("+0.5000") and same.startswith("+0.0000") and loss.startswith("-0.7500")
    assert repro_sid.popularity_breakdown({"rere": row}, 6, counts) == []  # needs the SFT row


def test_top10_popularity_summary_and_missing_model_folder(tmp_path):
    import collections

    from reproductions import sid_top10_popularity as top10

    counts = collections.Counter({"p1": 12, "p2": 10, "r": 1})
    s = top10.top10_summary([["p1", "p2", "r"], ["p1", "r", "x"]], counts, popular_from=10)
    assert s["popular_share"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert s["mean_count"] == pytest.approx(((12 + 10 + 1) / 3 + (12 + 1 + 0) / 3) / 2)
    assert s["distinct"] == 4 and s["top1_most_common"] == 2
    with pytest.raises(SystemExit, match="nope-model"):
        top10.main(["--sft_dir", str(tmp_path), "--models", "nope-model", "--no_results"])


def test_quick_run_reports_the_alignment_rows_sft_spread_and_beam_errors(quick):
    work, first, _, _ = quick
    sft_dirs = [p for p in work.glob("sft-*") if p.is_dir()]
    infos = [json.loads((p / "sft_info.json").read_text()) for p in sft_dirs]
    assert len(sft_dirs) == 3  # seed 0, seed 1 (the spread) and seed 0 with the alignment tasks
    assert len({i["params"] for i in infos}) == 1  # one tokenizer, one architecture for all three
    rows = {line.split(" | ")[0] for line in first.splitlines() if line.startswith("| ")}
    assert {"| 5. SFT + alignment tasks", "| 6. SFT + alignment tasks, then ReRe"} <= rows
    assert "vs sft_align" in first  # ReRe+align is paired against SFT+align, not SFT
    spread = first.split("### Seed spread")[1].split("###")[0]
    assert "SFT, 2 seeds" in spread and "seed 0: " in spread and "seed 1: " in spread
    errors = first.split("### Beam-error check")[1].split("###")[0]
    assert errors.count("of 6 test rows") == 2  # SFT and ReRe, each on the same 6 rows


def test_sft_is_deterministic_for_a_seed():
    from types import SimpleNamespace

    from reproductions._common import encode_examples, lean_sft, new_sft_model
    from trl_rere.testing import train_tokenizer

    _, valid = synthetic_sid_dataset(num_items=16, num_users=12, history_len=(2, 4), seed=1)
    pairs = repro_sid.sid_prefix_pairs(valid)
    tok = train_tokenizer(list(pairs["prompt"]) + list(pairs["target"]), kind="bpe", vocab_size=300)
    a = SimpleNamespace(hidden=16, layers=1, heads=2, intermediate=32, sft_seed=0, device="cpu")
    examples = encode_examples(tok, pairs, "sid")

    def train(seed):
        model = new_sft_model(tok, a, seed)
        lean_sft(model, tok, examples, epochs=2.0, lr=1e-2, batch_size=4, seed=seed, heldout=examples[:5])
        return model.state_dict()

    first, again, other = train(3), train(3), train(4)
    assert all(torch.equal(first[k], again[k]) for k in first)  # same configuration, same weights
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_earlier_pairs_stop_before_each_users_first_test_event_and_a_dev_users_dev_event():
    from datasets import Dataset

    def rows(spec):
        cols = {k: [] for k in ("prompt", "user_id", "history_titles", "history_item_ids", "target", "target_item_id")}
        for user, ids in spec:
            cols["prompt"].append("")
            cols["user_id"].append(user)
            cols["history_item_ids"].append(ids[:-1])
            cols["history_titles"].append([f"<a_{i}>" for i in ids[:-1]])
            cols["target_item_id"].append(ids[-1])
            cols["target"].append(f"<a_{ids[-1]}>")
        return Dataset.from_dict(cols)

    # u1: valid-only history pairs 1->2, 2->3 known; its first test row has history 1,2,3,4 (then 5, 6 later)
    # u2: no valid rows; first test history 7,8,9. u3: a dev user whose dev event is 11 -> 12 (then 13 before test)
    test = rows([("u1", [1, 2, 3, 4, 5]), ("u1", [1, 2, 3, 4, 5, 6]), ("u2", [7, 8, 9, 10]),
                 ("u3", [11, 12, 13, 14])])
    valid_pairs = repro_sid.sid_prefix_pairs(rows([("u1", [1, 2, 3])]))
    dev = rows([("u3", [11, 12])])
    pairs = repro_sid.earlier_pairs(test, dev, valid_pairs)
    got = sorted((u, tuple(h), t) for u, h, t in zip(pairs["user_id"], pairs["history_item_ids"],
                                                     pairs["target_item_id"]))
    # u1: only 1,2,3 -> 4 is new (1->2 and 1,2->3 are the valid pairs; 5 is the first test target, 6 a later one);
    # u2: 7->8, 7,8->9; u3: nothing (its dev event 11->12 is the first pair, and 13 comes after it)
    assert got == [("u1", (1, 2, 3), 4), ("u2", (7,), 8), ("u2", (7, 8), 9)]
    assert all(p.startswith("### User Input:") for p in pairs["prompt"])  # MiniOneRec's prompt, as the SFT pairs


def test_catalog_ranks_agree_with_a_beam_search_as_wide_as_the_catalog():
    from reproductions._common import catalog_ranks
    from trl_rere import evaluate_ranking
    from trl_rere.sid_tokens import add_sid_tokens
    from trl_rere.testing import tiny_causal_lm, train_tokenizer
    from trl_rere.trie import ItemTrie

    catalog, users = synthetic_sid_dataset(num_items=12, num_users=6, history_len=(2, 4), seed=2)
    tok = train_tokenizer(list(users["prompt"]), kind="bpe", vocab_size=300)
    add_sid_tokens(tok, catalog)
    model = tiny_causal_lm(tok, hidden_size=16, num_layers=2, num_heads=2, seed=5)
    trie = ItemTrie.from_catalog(catalog, tok, item_format="sid")
    _, records = evaluate_ranking(model, tok, users, trie, num_beams=len(trie), ks=(1, 5), show_progress=False,
                                  return_predictions=True)
    exact = catalog_ranks(model, tok, list(users["prompt"]), list(users["target"]), trie, chunk=5)
    assert exact == [r["target_rank"] for r in records]
    assert len(set(exact)) > 1 and max(exact) > 3  # targets at several ranks, the pruning's bounds tested
    capped = catalog_ranks(model, tok, list(users["prompt"]), list(users["target"]), trie, cap=3, chunk=2)
    assert capped == [min(r, 3) for r in exact]  # "3 or more" once three items are found above the target
    narrow = [r["target_rank"] for r in evaluate_ranking(model, tok, users, trie, num_beams=2, ks=(1,),
                                                         show_progress=False, return_predictions=True)[1]]
    # a narrow beam never ranks a target it keeps above its exact rank (it can only lose items above it)
    assert all(b is None or b <= e for b, e in zip(narrow, exact))


def test_clustered_standard_error_counts_users_not_rows():
    from reproductions._common import mean_se, paired_difference

    # four rows of two users: the SE of the two users' means, not of four independent rows
    assert mean_se([0.0, 2.0, 4.0, 6.0], clusters=["a", "a", "b", "b"]) == pytest.approx((3.0, 2.0))
    assert mean_se([0.0, 2.0, 4.0, 6.0])[1] == pytest.approx(1.2910, abs=1e-4)
    assert paired_difference([1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0], clusters=[1, 1, 2, 2]) == \
        pytest.approx((2.0, 1.0))
    with pytest.raises(ValueError):
        mean_se([1.0, 2.0], clusters=["a"])  # one label per value


def test_section_names_a_marker_of_the_results_page(capsys):
    assert repro_sid.parse_args(["--section", "repro_sid_5m"]).section == "repro_sid_5m"
    with pytest.raises(SystemExit):
        repro_sid.parse_args(["--section", "5m -->"])  # would break the page's markers
    assert "--section must be letters, digits and underscores" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--test_lrs", "1e-4"], "--test_lrs needs --test_every_lr"),
    (["--test_every_lr", "--test_lrs", "3e-4"], "--test_lrs 3e-4 not in --lr_grid"),
    (["--test_every_lr", "--test_lrs", "1e-4x"], "could not convert string to float"),
])
def test_test_lrs_is_refused_where_it_would_be_ignored_or_train_outside_the_grid(argv, message, capsys):
    with pytest.raises(SystemExit):
        repro_sid.parse_args(argv)
    assert message in capsys.readouterr().err
    assert repro_sid.parse_args(["--test_every_lr", "--test_lrs", "0.0001"]).test_lrs == "0.0001"
