"""The example scripts as users run them (`accelerate launch examples/toys.py --smoke`, `python examples/sft.py`):
clear, fast stops on bad paths and missing downloads, and what a smoke run reports and where it writes."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
AMAZON = DATA / "amazon"
EXAMPLES = REPO / "examples"
INDUSTRIAL_TEST_ROWS = 4533
# The paper's optimizer step (METHOD.md section 5): 4 GPUs x 64 completions x gradient accumulation 2.
PAPER_GPUS, PAPER_PER_DEVICE, PAPER_GRAD_ACCUM = 4, 64, 2

needs_data = pytest.mark.skipif(not AMAZON.is_dir(), reason="../shared/data/amazon is not present")


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


def _run(args, cwd=REPO, timeout=120):
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _script(name):
    return [sys.executable, str(EXAMPLES / name)]


def _check_metrics(output_dir: Path, max_k: int):
    metrics = json.loads((output_dir / "ranking_metrics.json").read_text())
    for k in (1, 3, 5, 10):
        assert 0.0 <= metrics[f"NDCG@{k}"] <= metrics[f"HR@{k}"] <= 1.0
    assert not any(key.endswith(f"@{max_k * 5}") for key in metrics)  # no cut-off beyond the beams searched
    assert (output_dir / "model.safetensors").exists()
    return metrics


def _table_rows(stdout: str) -> dict[str, list[float]]:
    """The comparison table's rows: `HR@10` -> [before RL, after RL, random ranking]."""
    rows = {}
    for line in stdout.splitlines():
        match = re.match(r"\| ((?:HR|NDCG)@\d+) \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [float(cell) for cell in match.group(2).split("|")]
    return rows


def _rl_steps(output_dir: Path) -> list[dict]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [h for h in state["log_history"] if "reward" in h and "grad_norm" in h]


# -- fail fast --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, expected",
    [
        # a typo in --data_dir must not fall back to the synthetic catalog
        (["--data_dir", "{tmp}/dta"], ["{tmp}/dta", "no such folder", "info/Industrial_and_Scientific_5_*.txt"]),
        # --category without --data_dir looks in the default folder, and says so
        (["--category", "Office_Products"], ["--data_dir data", "info/Office_Products_5_*.txt"]),
    ],
    ids=["data_dir_typo", "category_without_files"],
)
def test_toys_smoke_stops_when_given_data_does_not_resolve(tmp_path, args, expected):
    args = [a.format(tmp=tmp_path) for a in args]
    proc = _run(_script("toys.py") + ["--smoke", *args, "--output_dir", str(tmp_path / "out")], cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    for text in expected:
        assert text.format(tmp=tmp_path) in proc.stderr, proc.stderr[-3000:]
    assert "synthetic" not in proc.stdout and "| HR@1 |" not in proc.stdout
    assert not (tmp_path / "out").exists()


@needs_data
def test_toys_data_dir_errors_name_the_folder_to_pass(tmp_path):
    # The parent of the layout is refused with a pointer to the folder that holds info/ ...
    proc = _run(_script("toys.py") + ["--smoke", "--data_dir", str(DATA), "--output_dir", str(tmp_path / "out")])
    assert proc.returncode == 2
    assert "has no info/ folder" in proc.stderr and f"Did you mean --data_dir {AMAZON}?" in proc.stderr
    # ... and an unknown category lists those that are there.
    proc = _run(_script("toys.py") + ["--smoke", "--data_dir", str(AMAZON), "--category", "Office_Products",
                                      "--output_dir", str(tmp_path / "out")])
    assert proc.returncode == 2
    assert f"{AMAZON}/info/Office_Products_5_*.txt" in proc.stderr
    assert "Industrial_and_Scientific, Toys_and_Games" in proc.stderr


def test_toys_stops_at_once_without_data(tmp_path):
    proc = _run(_script("toys.py") + ["--data_dir", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "out")])
    assert proc.returncode == 2
    assert "Toys_and_Games" in proc.stderr and str(tmp_path / "missing") in proc.stderr


@needs_data
def test_toys_stops_at_once_without_hub(tmp_path):
    proc = _run(_script("toys.py") + ["--data_dir", str(AMAZON), "--category", "Industrial_and_Scientific",
                                      "--train_split", "valid", "--model_name_or_path", "Qwen/Qwen2-0.5B",
                                      "--output_dir", str(tmp_path / "out")])
    assert proc.returncode == 2
    assert "--model_name_or_path Qwen/Qwen2-0.5B: not a local folder" in proc.stderr
    assert "hf download Qwen/Qwen2-0.5B" in proc.stderr


@needs_data
@pytest.mark.parametrize("script", ["sft.py", "evaluate.py"])
def test_sft_and_evaluate_report_a_missing_local_model_as_a_path(tmp_path, script):
    missing = tmp_path / "rere-sft" / "checkpoint-9"
    common = ["--data_dir", str(AMAZON), "--category", "Industrial_and_Scientific"]
    proc = _run(_script(script) + ["--model_name_or_path", str(missing), *common])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"--model_name_or_path {missing}: no such folder" in proc.stderr
    assert "hf download" not in proc.stderr
    # a folder that is not a saved model
    (tmp_path / "empty").mkdir()
    proc = _run(_script(script) + ["--model_name_or_path", str(tmp_path / "empty"), *common])
    assert proc.returncode == 2 and "has no config.json" in proc.stderr


def test_sft_stops_at_once_without_hub(tmp_path):
    proc = _run(_script("sft.py") + ["--model_name_or_path", "Qwen/Qwen2-0.5B", "--data_dir", str(tmp_path)])
    assert proc.returncode == 2
    assert "hf download Qwen/Qwen2-0.5B" in proc.stderr


# -- recipe and launch configs ----------------------------------------------------------------------------------------
def test_recipe_and_launch_configs_give_the_papers_batch():
    recipe = yaml.safe_load((EXAMPLES / "recipes" / "toys.yaml").read_text())
    per_step = recipe["per_device_train_batch_size"] * recipe["gradient_accumulation_steps"]
    assert (recipe["per_device_train_batch_size"], recipe["gradient_accumulation_steps"]) == (
        PAPER_PER_DEVICE, PAPER_GRAD_ACCUM)
    assert per_step % recipe["num_generations"] == 0
    for name in ("deepspeed_zero2.yaml", "deepspeed_zero3.yaml", "multi_gpu.yaml"):
        config = yaml.safe_load((EXAMPLES / "accelerate_configs" / name).read_text())
        assert config["num_processes"] * per_step == PAPER_GPUS * PAPER_PER_DEVICE * PAPER_GRAD_ACCUM, name
    # Every recipe key is an argument of toys.py (TrlParser would refuse it at launch otherwise).
    sys.path.insert(0, str(EXAMPLES))
    try:
        from dataclasses import fields

        import toys
        from trl import ModelConfig

        from trl_rere import ReReConfig

        known = {f.name for cls in (toys.ScriptArguments, ReReConfig, ModelConfig) for f in fields(cls)}
    finally:
        sys.path.remove(str(EXAMPLES))
    assert set(recipe) <= known, set(recipe) - known
    assert not os.path.isabs(recipe["output_dir"]) and recipe["output_dir"].startswith("runs/")


# -- smoke runs -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_toys_smoke_synthetic_under_accelerate(tmp_path):
    """The README's first command, from a clone: which data, signal in every RL step, before/after/random table,
    output under runs/ (not trainer_output/), and the final ranking in tensorboard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    proc = _run(_accelerate() + [str(EXAMPLES / "toys.py"), "--smoke", "--report_to", "tensorboard"], cwd=tmp_path,
                timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = tmp_path / "runs" / "toys-smoke-synthetic-title"
    assert not (tmp_path / "trainer_output").exists()
    assert re.search(r"^settings: .*num_generations=4\* .*max_steps=4\* ", proc.stdout, re.MULTILINE), proc.stdout[-3000:]
    assert "FutureWarning" not in proc.stderr, proc.stderr[-3000:]
    metrics = _check_metrics(out, 10)
    assert metrics["num_examples"] == 32
    assert "data: synthetic title catalog" in proc.stdout and "catalog 48 items" in proc.stdout
    assert "ranking 32 of 32 users" in proc.stdout

    rows = _table_rows(proc.stdout)
    assert "| metric | before RL | after RL | random ranking |" in proc.stdout
    assert rows["HR@10"][1] == pytest.approx(metrics["HR@10"], abs=1e-4)
    assert rows["HR@10"][0] == pytest.approx(metrics["before_rl"]["HR@10"], abs=1e-4)
    assert rows["HR@10"][2] == pytest.approx(10 / 48, abs=1e-4)

    steps = _rl_steps(out)
    assert len(steps) == 4
    # the SFT warm start puts the target into most groups; a launch's thread count can shift a group at the margin
    assert sum(s["reward_std"] > 0 for s in steps) >= 3, steps
    assert all((s["reward_std"] > 0) == (s["grad_norm"] > 0) for s in steps), steps

    runs = list((out / "runs").iterdir())
    assert len(runs) == 1
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    scalars = {e.step: e.value for e in events.Scalars("test/HR@10")}
    assert scalars == {0: pytest.approx(metrics["before_rl"]["HR@10"]), 4: pytest.approx(metrics["HR@10"])}
    assert "test/NDCG@10" in events.Tags()["scalars"] and "train/reward" in events.Tags()["scalars"]


@pytest.mark.slow
@needs_data
def test_toys_smoke_on_industrial_files(tmp_path):
    """`--smoke --data_dir` as documented: the default cap on the users ranked, real titles, and RL's signal or,
    where the tiny model never gets the target into a group, the trainer's warning that RL receives none."""
    out = tmp_path / "run"
    proc = _run(_script("toys.py") + ["--smoke", "--data_dir", str(AMAZON), "--output_dir", str(out),
                                      "--smoke_sft_steps", "10", "--predictions_file", str(out / "predictions.jsonl")],
                timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    cap = int(re.search(r"smoke: ranking at most (\d+) users", proc.stdout).group(1))
    assert cap < INDUSTRIAL_TEST_ROWS
    assert f"ranking {cap} of {INDUSTRIAL_TEST_ROWS:,} users" in proc.stdout
    assert "Industrial_and_Scientific" in proc.stdout and "catalog 3,646 items" in proc.stdout
    metrics = _check_metrics(out, 10)
    assert metrics["num_examples"] == cap
    assert metrics["random_ranking"]["HR@10"] == pytest.approx(10 / 3646)
    steps = _rl_steps(out)
    no_signal = all(s["rere/target_in_group"] == 0 for s in steps[:2])  # the smoke warns after 2 such rounds
    assert ("RL receives no signal" in proc.stdout + proc.stderr) == no_signal
    assert all((s["reward_std"] > 0) == (s["grad_norm"] > 0) for s in steps)
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == cap
    catalog_titles = {
        line.rsplit("\t", 1)[0]
        for line in (AMAZON / "info" / "Industrial_and_Scientific_5_1996-10-2018-11.txt").read_text().splitlines()
    }
    for line in lines[:20]:
        record = json.loads(line)
        assert len(record["predictions"]) == len(set(record["predictions"])) == 10
        assert set(record["predictions"]) <= catalog_titles


@needs_data
def test_sft_trains_on_cpu(tmp_path):
    """examples/sft.py on a CPU with TRL's default bf16=True would stop in transformers' bf16 check. It says what it
    trains on and where it saved, with no FutureWarning, and its training_args.bin loads outside the script."""
    from trl_rere.data import load_amazon
    from trl_rere.testing import tiny_causal_lm, train_tokenizer

    catalog, splits = load_amazon(AMAZON, "Industrial_and_Scientific", splits=("valid",))
    tokenizer = train_tokenizer(list(catalog.titles) + list(splits["valid"]["prompt"][:200]), vocab_size=1024)
    tiny_causal_lm(tokenizer, hidden_size=16).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "sft"
    proc = _run(_script("sft.py") + ["--model_name_or_path", str(tmp_path / "model"), "--data_dir", str(AMAZON),
                                     "--category", "Industrial_and_Scientific", "--train_split", "valid",
                                     "--eval_split", "test", "--eval_strategy", "no", "--max_steps", "2",
                                     "--per_device_train_batch_size", "2", "--max_length", "1024",
                                     "--max_train_samples", "40", "--save_strategy", "no", "--output_dir", str(out)],
                timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert "catalog 3,646 items; fine-tuning on 40 of 4,532 valid rows" in proc.stdout
    assert f"saved the model and tokenizer to {out}" in proc.stdout
    assert "FutureWarning" not in proc.stderr, proc.stderr[-3000:]
    # the Trainer pickles the config: its class must live in a module, not in the script's __main__
    load = ("import sys, torch; a = torch.load(sys.argv[1], weights_only=False); "
            "print(type(a).__module__, type(a).__name__, a.max_steps)")
    loaded = _run([sys.executable, "-c", load, str(out / "training_args.bin")], cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == ["trl_rere.config", "ReReSFTConfig", "2"]


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "minionerec").is_dir(), reason="../shared/data/minionerec is not present")
def test_toys_smoke_on_semantic_ids(tmp_path):
    """`--smoke --item_format sid` on MiniOneRec's files: SID prompts, SID beams from the catalog, the table."""
    out = tmp_path / "run"
    proc = _run(_script("toys.py") + ["--smoke", "--item_format", "sid", "--data_dir", str(DATA / "minionerec"),
                                      "--output_dir", str(out), "--smoke_sft_steps", "50", "--max_eval_samples", "20",
                                      "--predictions_file", str(out / "predictions.jsonl")], timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "catalog 3,670 items" in proc.stdout and "ranking 20 of 4,533 users" in proc.stdout
    assert "| metric | before RL | after RL | random ranking |" in proc.stdout
    assert _check_metrics(out, 10)["num_examples"] == 20
    index = json.loads((DATA / "minionerec" / "index" / "Industrial_and_Scientific.index.json").read_text())
    sids = {"".join(codes) for codes in index.values()}
    for line in (out / "predictions.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert len(set(record["predictions"])) == 10 and set(record["predictions"]) <= sids
        assert record["target"] in sids


@pytest.mark.skipif(not (DATA / "minionerec").is_dir(), reason="../shared/data/minionerec is not present")
def test_sft_adds_the_sid_tokens(tmp_path):
    """`examples/sft.py --item_format sid` starts from a model without the code tokens and saves one with them."""
    from transformers import AutoConfig, AutoTokenizer

    from trl_rere.testing import tiny_causal_lm, train_tokenizer

    tokenizer = train_tokenizer(["### Response:\n", "The user has interacted with items"], vocab_size=300)
    tiny_causal_lm(tokenizer, hidden_size=16).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "sft"
    proc = _run(_script("sft.py") + ["--model_name_or_path", str(tmp_path / "model"), "--item_format", "sid",
                                     "--data_dir", str(DATA / "minionerec"), "--category", "Industrial_and_Scientific",
                                     "--train_split", "valid", "--eval_split", "none", "--max_steps", "2",
                                     "--per_device_train_batch_size", "2", "--save_strategy", "no",
                                     "--output_dir", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    saved = AutoTokenizer.from_pretrained(out)
    assert len(saved) == len(tokenizer) + 48 + 256 + 256  # the 560 codes of the three levels
    index = json.loads((DATA / "minionerec" / "index" / "Industrial_and_Scientific.index.json").read_text())
    codes = next(iter(index.values()))
    assert all(c in saved.get_vocab() for c in codes) and saved.tokenize("".join(codes)) == codes
    assert AutoConfig.from_pretrained(out).vocab_size >= len(saved)
