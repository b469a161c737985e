"""The README's "Your own data" chain, run as written on a generated raw sample: raw Amazon Reviews 2018 files ->
`prepare_data.py amazon2018` (-> `prepare_data.py sids` for semantic IDs) -> `make_tiny_model.py` -> `sft.py` ->
`toys.py` -> `evaluate.py`, each a real process (the training scripts under `accelerate launch`)."""

from __future__ import annotations

import json

import pytest
from test_examples import _accelerate, _run, _script

from trl_rere.data.raw_synthetic import write_synthetic_amazon2018


CATEGORY = "Tools"  # not one of the Amazon categories the title prompts know: the chain names it (--category_name)


def _ok(result, what: str):
    assert result.returncode == 0, f"{what} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("item_format", ["title", "sid"])
def test_own_data_chain_from_raw_files(tmp_path, item_format):
    raw = write_synthetic_amazon2018(tmp_path / "raw", num_interactions=6000, num_items=150, num_users=700,
                                     first="2017-01", last="2018-06", category=CATEGORY)
    data = tmp_path / "data"
    _ok(_run(_script("prepare_data.py") + [
        "amazon2018", "--reviews", str(raw["reviews"]), "--meta", str(raw["meta"]), "--category", CATEGORY,
        "--out", str(data), "--description", "--no_progress"]), "prepare_data.py amazon2018")
    naming = ["--category_name", "tool"]
    if item_format == "sid":
        sid_data = tmp_path / "sid-data"
        (texts,) = (data / "text").glob(f"{CATEGORY}_5_*.jsonl")
        result = _ok(_run(_script("prepare_data.py") + [
            "sids", "--data_dir", str(data), "--category", CATEGORY, "--out", str(sid_data), "--encoder", "tfidf",
            "--dim", "32", "--levels", "3", "--codebook_size", "8", "--metadata", str(texts)]), "prepare_data.py sids")
        assert "collision" in result.stdout.lower()
        data, naming = sid_data, []
    common = ["--data_dir", str(data), "--category", CATEGORY, "--item_format", item_format] + naming
    tiny, sft, rere = tmp_path / "tiny", tmp_path / "sft", tmp_path / "rere"
    _ok(_run(_script("make_tiny_model.py") + common + ["--output_dir", str(tiny)]), "make_tiny_model.py")
    _ok(_run(_accelerate() + [str(_script("sft.py")[1])] + common + [
        "--model_name_or_path", str(tiny), "--eval_split", "none", "--max_train_samples", "256",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1",
        "--learning_rate", "3e-3", "--report_to", "none", "--output_dir", str(sft)], timeout=600), "sft.py")
    _ok(_run(_accelerate() + [str(_script("toys.py")[1])] + common + [
        "--smoke", "--model_name_or_path", str(sft), "--max_steps", "2", "--max_eval_samples", "8",
        "--eval_num_beams", "4", "--eval_before_train", "false", "--report_to", "none", "--output_dir", str(rere)],
        timeout=600), "toys.py")
    out = tmp_path / "metrics.json"
    result = _ok(_run(_accelerate() + [str(_script("evaluate.py")[1])] + common + [
        "--model_name_or_path", str(rere), "--split", "test", "--num_beams", "5", "--max_samples", "10",
        "--output_file", str(out)], timeout=600), "evaluate.py")
    metrics = json.loads(out.read_text())
    assert 0.0 <= metrics["NDCG@5"] <= metrics["HR@5"] <= 1.0
    assert not any(key.endswith("@10") for key in metrics)  # no cut-off beyond the 5 beams
    assert "10" in result.stdout  # the users it ranked
