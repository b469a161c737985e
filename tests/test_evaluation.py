import json
import math

import pytest

from trl_rere.decoding import constrained_beam_search
from trl_rere.data import synthetic_catalog_dataset
from trl_rere.evaluation import (
    RankingEvalCallback,
    _pad_shard,
    _shard_indices,
    evaluate_ranking,
    ranking_metrics,
)
from trl_rere.testing import tiny_causal_lm, train_tokenizer
from trl_rere.trie import ItemTrie


# -- metrics --------------------------------------------------------------------------------------------------------
def test_ranking_metrics_by_hand():
    # Three users: target at rank 0, at rank 2, and not retrieved.
    metrics = ranking_metrics([0, 2, None], ks=(1, 3, 5))
    assert metrics["HR@1"] == pytest.approx(1 / 3)
    assert metrics["NDCG@1"] == pytest.approx(1 / 3)  # 1/log2(2) = 1 for the rank-0 user
    assert metrics["HR@3"] == pytest.approx(2 / 3)
    assert metrics["NDCG@3"] == pytest.approx((1 + 0.5) / 3)  # rank 2: 1/log2(4) = 0.5
    assert metrics["HR@5"] == pytest.approx(2 / 3)
    assert metrics["NDCG@5"] == pytest.approx(0.5)
    assert list(metrics) == ["HR@1", "NDCG@1", "HR@3", "NDCG@3", "HR@5", "NDCG@5"]


def test_ranking_metrics_boundaries_and_misses():
    # rank K-1 counts at K, rank K does not; -1 and None are misses.
    metrics = ranking_metrics([4, 5, -1, None], ks=(5, 6))
    assert metrics["HR@5"] == pytest.approx(0.25)
    assert metrics["NDCG@5"] == pytest.approx((1 / math.log2(6)) / 4)
    assert metrics["HR@6"] == pytest.approx(0.5)
    assert metrics["NDCG@6"] == pytest.approx((1 / math.log2(6) + 1 / math.log2(7)) / 4)
    assert ranking_metrics([None, -1])["HR@50"] == 0.0
    assert set(ranking_metrics([0])) == {f"{m}@{k}" for k in (1, 3, 5, 10, 20, 50) for m in ("HR", "NDCG")}


def test_ranking_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        ranking_metrics([])
    with pytest.raises(ValueError, match="positive integer"):
        ranking_metrics([0], ks=(0,))
    with pytest.raises(ValueError, match="rank 1"):
        ranking_metrics([0, 1.5])


# -- sharding -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,world", [(1, 1), (7, 1), (7, 2), (9, 4), (3, 5), (64, 8)])
def test_shards_partition_the_data_and_pad_to_equal_length(n, world):
    shards = [_shard_indices(n, r, world) for r in range(world)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(n))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    padded = [_pad_shard(s, n, world) for s in shards]
    assert len({len(p) for p in padded}) == 1 == len({math.ceil(len(p) / 3) for p in padded})
    for s, p in zip(shards, padded):
        assert p[: len(s)] == s and all(0 <= i < n for i in p)


def test_shard_arguments_are_checked():
    with pytest.raises(ValueError):
        _shard_indices(4, 2, 2)
    with pytest.raises(ValueError, match="empty"):
        _pad_shard([], 0, 2)


# -- evaluate_ranking on a tiny model -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup():
    catalog, dataset = synthetic_catalog_dataset(num_items=12, num_users=9, chain_length=4, seed=1)
    texts = list(dataset["prompt"]) + [f'"{t}"\n' for t in catalog.titles]
    tokenizer = train_tokenizer(texts, kind="bpe", vocab_size=512)
    model = tiny_causal_lm(tokenizer, seed=0)
    trie = ItemTrie.from_catalog(catalog, tokenizer)
    return catalog, dataset, tokenizer, model, trie


def _reference_ranks(model, tokenizer, dataset, trie, num_beams):
    results = constrained_beam_search(model, tokenizer, list(dataset["prompt"]), trie, num_beams=num_beams)
    ranks = []
    for target, beams in zip(dataset["target"], results):
        titles = [b.title for b in beams]
        ranks.append(titles.index(target) if target in titles else None)
    return ranks, results


def test_evaluate_ranking_matches_direct_beam_search(setup, tmp_path):
    catalog, dataset, tokenizer, model, trie = setup
    num_beams = len(catalog)  # as many beams as titles: every title comes back, so every target has a rank
    model.train()
    out = tmp_path / "sub" / "preds.jsonl"
    metrics = evaluate_ranking(
        model, tokenizer, dataset, trie, num_beams=num_beams, ks=(1, 5, 12), batch_size=4, predictions_file=out,
        show_progress=False,
    )
    assert model.training, "the model's training mode must be restored"
    model.eval()
    ranks, results = _reference_ranks(model, tokenizer, dataset, trie, num_beams)
    assert all(r is not None for r in ranks)
    assert metrics["num_examples"] == dataset.num_rows
    assert metrics["HR@12"] == 1.0
    expected = ranking_metrics(ranks, ks=(1, 5, 12))
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value)

    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["index"] for line in lines] == list(range(dataset.num_rows))
    for line, ex, rank, beams in zip(lines, dataset, ranks, results):
        assert line["user_id"] == ex["user_id"] and line["target"] == ex["target"]
        assert line["target_rank"] == rank == line["predictions"].index(ex["target"])
        assert line["predictions"] == [b.title for b in beams]
        assert line["scores"] == pytest.approx([b.score for b in beams], abs=1e-4)
        assert line["scores"] == sorted(line["scores"], reverse=True)
        assert len(set(line["predictions"])) == len(line["predictions"]) == num_beams


def test_evaluate_ranking_returns_the_rows_it_would_write(setup, tmp_path):
    catalog, dataset, tokenizer, model, trie = setup
    out = tmp_path / "preds.jsonl"
    kwargs = dict(num_beams=6, ks=(1, 5), batch_size=4, show_progress=False)
    metrics, rows = evaluate_ranking(model, tokenizer, dataset, trie, return_predictions=True, **kwargs)
    assert metrics == evaluate_ranking(model, tokenizer, dataset, trie, predictions_file=out, **kwargs)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in rows] == list(range(dataset.num_rows))
    for row, line in zip(rows, lines):
        assert row["target_rank"] == line["target_rank"] and row["predictions"] == line["predictions"]
    assert ranking_metrics([r["target_rank"] for r in rows], ks=(1, 5)) == {
        k: v for k, v in metrics.items() if k != "num_examples"
    }


def test_evaluate_ranking_counts_absent_targets_as_misses(setup):
    _, dataset, tokenizer, model, trie = setup
    rows = [dict(ex) for ex in dataset.select(range(3))]
    rows[1]["target"] = "Not A Catalog Title"
    with pytest.warns(UserWarning, match="1 of 3 targets are not catalog titles"):
        metrics = evaluate_ranking(model, tokenizer, rows, trie, num_beams=4, ks=(4,), show_progress=False)
    assert metrics["num_examples"] == 3
    assert metrics["HR@4"] <= 2 / 3


def test_evaluate_ranking_checks_its_input(setup):
    _, dataset, tokenizer, model, trie = setup
    with pytest.raises(ValueError, match="no 'target' column"):
        evaluate_ranking(model, tokenizer, dataset.remove_columns("target"), trie, num_beams=2, show_progress=False)
    with pytest.raises(ValueError, match="positive integer"):
        evaluate_ranking(model, tokenizer, dataset, trie, num_beams=2, ks=(0,), show_progress=False)


class FakeAccelerator:
    def __init__(self, rank, world):
        self.process_index, self.num_processes, self.is_main_process = rank, world, rank == 0


def test_sharded_evaluation_gives_the_single_process_result(setup, tmp_path, monkeypatch):
    """Two simulated processes: each evaluates its shard, `gather_object` concatenates them."""
    import accelerate.utils

    _, dataset, tokenizer, model, trie = setup
    n, world, num_beams, ks = dataset.num_rows, 2, 4, (1, 3, 4)
    single = evaluate_ranking(
        model, tokenizer, dataset, trie, num_beams=num_beams, ks=ks, batch_size=2, show_progress=False
    )

    calls = {0: 0, 1: 0}
    original_generate = model.generate
    current = {"rank": None}

    def counting_generate(*args, **kwargs):
        calls[current["rank"]] += 1
        return original_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting_generate)
    gathered = {}

    # Rank 1 runs first; its gather returns its own records plus placeholders for rank 0's rows.
    def gather_rank1(records):
        gathered[1] = list(records)
        return list(records) + [{"index": i, "target_rank": None} for i in _shard_indices(n, 0, world)]

    monkeypatch.setattr(accelerate.utils, "gather_object", gather_rank1)
    current["rank"] = 1
    out1 = tmp_path / "rank1.jsonl"
    evaluate_ranking(model, tokenizer, dataset, trie, num_beams=num_beams, ks=ks, batch_size=2,
                     predictions_file=out1, accelerator=FakeAccelerator(1, world), show_progress=False)
    assert not out1.exists(), "only the main process writes predictions"
    assert sorted(r["index"] for r in gathered[1]) == _shard_indices(n, 1, world)

    monkeypatch.setattr(accelerate.utils, "gather_object", lambda records: list(records) + gathered[1])
    current["rank"] = 0
    out0 = tmp_path / "rank0.jsonl"
    sharded = evaluate_ranking(model, tokenizer, dataset, trie, num_beams=num_beams, ks=ks, batch_size=2,
                               predictions_file=out0, accelerator=FakeAccelerator(0, world), show_progress=False)
    assert sharded == pytest.approx(single)
    # 9 rows over 2 processes: shards of 5 and 4, padded to 5, i.e. 3 generate calls each (ZeRO-3 needs equal counts).
    assert calls == {0: 3, 1: 3}
    lines = [json.loads(line) for line in out0.read_text(encoding="utf-8").splitlines()]
    assert [line["index"] for line in lines] == list(range(n))


# -- callback -------------------------------------------------------------------------------------------------------
def _trainer(model, tokenizer, dataset, tmp_path, **kwargs):
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    def encode(ex):
        ids = tokenizer(ex["prompt"] + f'"{ex["target"]}"\n', add_special_tokens=False)["input_ids"]
        return {"input_ids": ids + [tokenizer.eos_token_id]}

    lm_data = dataset.map(encode, remove_columns=dataset.column_names)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, per_device_eval_batch_size=4,
        learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True,
        **kwargs,
    )
    return Trainer(
        model=model, args=args, train_dataset=lm_data, eval_dataset=lm_data,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )


def test_callback_adds_metrics_on_evaluate_and_logs_through_the_trainer(setup, tmp_path):
    _, dataset, tokenizer, _, trie = setup
    model = tiny_causal_lm(tokenizer, seed=1)
    callback = RankingEvalCallback(dataset, trie, tokenizer, num_beams=4, ks=(1, 4), max_examples=5, batch_size=5)
    trainer = _trainer(model, tokenizer, dataset, tmp_path, eval_strategy="steps", eval_steps=1, max_steps=2)
    callback.attach(trainer)
    assert callback in trainer.callback_handler.callbacks
    trainer.train()
    ranking_logs = [e for e in trainer.state.log_history if "eval_NDCG@4" in e]
    assert [e["step"] for e in ranking_logs] == [1, 2]
    assert all(e["eval_num_examples"] == 5 for e in ranking_logs)
    metrics = trainer.evaluate()  # metrics returned by evaluate() include ours (for metric_for_best_model)
    assert {"eval_HR@1", "eval_NDCG@1", "eval_HR@4", "eval_NDCG@4", "eval_loss"} <= set(metrics)


def test_callback_eval_steps_keep_every_training_log(setup, tmp_path):
    # Ranking at the end of a step must not cancel the trainer's own log of that step (Trainer.log clears should_log).
    _, dataset, tokenizer, _, trie = setup
    trainer = _trainer(tiny_causal_lm(tokenizer, seed=1), tokenizer, dataset, tmp_path, max_steps=3)
    RankingEvalCallback(dataset, trie, tokenizer, num_beams=3, ks=(3,), eval_steps=1, max_examples=2).attach(trainer)
    trainer.train()
    assert [e["step"] for e in trainer.state.log_history if "eval_NDCG@3" in e] == [1, 2, 3]
    assert [e["step"] for e in trainer.state.log_history if "loss" in e] == [1, 2, 3]


def test_callback_eval_steps_without_trainer_writes_log_history(setup, tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    _, dataset, tokenizer, model, trie = setup
    callback = RankingEvalCallback(dataset, trie, tokenizer, num_beams=3, ks=(3,), eval_steps=2, max_examples=2,
                                   predictions_dir=tmp_path / "preds")
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    state, control = TrainerState(), TrainerControl()
    for step in (1, 2, 3):
        state.global_step = step
        callback.on_step_end(args, state, control, model=model)
    assert [e["step"] for e in state.log_history] == [2]
    assert set(state.log_history[0]) - {"epoch"} == {"eval_HR@3", "eval_NDCG@3", "eval_num_examples", "step"}
    assert (tmp_path / "preds" / "ranking-step-2.jsonl").is_file()
    # An evaluation event at the same step reuses the result instead of decoding again.
    state.global_step = 2
    metrics = {"eval_loss": 1.0}
    callback.on_evaluate(args, state, control, model=model, metrics=metrics)
    assert len(state.log_history) == 1 and metrics["eval_HR@3"] == state.log_history[0]["eval_HR@3"]
    assert callback.evaluate(model)["eval_num_examples"] == 2


def test_callback_checks_arguments(setup):
    _, dataset, tokenizer, model, trie = setup
    with pytest.raises(ValueError, match="eval_steps"):
        RankingEvalCallback(dataset, trie, tokenizer, eval_steps=0)
    with pytest.raises(ValueError, match="positive integer"):
        RankingEvalCallback(dataset, trie, tokenizer, ks=(-1,))
