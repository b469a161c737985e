"""The example scripts as users run them: `accelerate launch examples/toys.py --smoke`, and clear stops without data
or hub access."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def _env():
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        TRL_EXPERIMENTAL_SILENCE="1",
        CUDA_VISIBLE_DEVICES="",
    )
    return env


def _accelerate():
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu"]


def _check_metrics(output_dir: Path, max_k: int):
    metrics = json.loads((output_dir / "ranking_metrics.json").read_text())
    for k in (1, 3, 5, 10):
        assert 0.0 <= metrics[f"NDCG@{k}"] <= metrics[f"HR@{k}"] <= 1.0
    assert not any(key.endswith(f"@{max_k * 5}") for key in metrics)  # no cut-off beyond the beams searched
    assert (output_dir / "model.safetensors").exists()
    return metrics


@pytest.mark.slow
def test_toys_smoke_synthetic_under_accelerate(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        _accelerate() + [str(REPO / "examples" / "toys.py"), "--smoke", "--data_dir", str(tmp_path / "no-data"),
                         "--output_dir", str(out), "--smoke_sft_steps", "20"],
        env=_env(), capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "| NDCG |" in proc.stdout
    metrics = _check_metrics(out, 10)
    assert metrics["num_examples"] == 32


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not present")
def test_toys_smoke_on_industrial_files(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "toys.py"), "--smoke", "--data_dir", str(DATA),
         "--output_dir", str(out), "--max_train_samples", "64", "--max_eval_samples", "8", "--smoke_sft_steps", "10",
         "--predictions_file", str(out / "predictions.jsonl")],
        env=_env(), capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert _check_metrics(out, 10)["num_examples"] == 8
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 8
    catalog_titles = {
        line.rsplit("\t", 1)[0]
        for line in (DATA / "amazon" / "info" / "Industrial_and_Scientific_5_1996-10-2018-11.txt").read_text().splitlines()
    }
    for line in lines:
        record = json.loads(line)
        assert len(record["predictions"]) == len(set(record["predictions"])) == 10
        assert set(record["predictions"]) <= catalog_titles


def test_toys_stops_at_once_without_data(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "toys.py"), "--data_dir", str(tmp_path / "missing"),
         "--output_dir", str(tmp_path / "out")],
        env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    assert "Toys_and_Games" in proc.stderr and str(tmp_path / "missing") in proc.stderr


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not present")
def test_toys_stops_at_once_without_hub(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "toys.py"), "--data_dir", str(DATA),
         "--category", "Industrial_and_Scientific", "--train_split", "valid",
         "--model_name_or_path", "Qwen/Qwen2-0.5B", "--output_dir", str(tmp_path / "out")],
        env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    assert "cannot load the model 'Qwen/Qwen2-0.5B'" in proc.stderr and "--model_name_or_path" in proc.stderr
