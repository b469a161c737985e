"""What a new user meets running examples/sft.py -> toys.py -> evaluate.py on a catalog of their own (issue 23): a
folder without a tokenizer, `--smoke` next to their own settings, G that does not fit the batch, a split or an item
format that does not match the files, and what the scripts print. The checks run in-process where they stop before
any model loads (`_common`'s `fail` raises SystemExit(2)); the launches are few and end within seconds."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trl_rere import ReReConfig
from trl_rere.testing import tiny_causal_lm, train_tokenizer, write_amazon_folder, write_minionerec_folder

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
sys.path.insert(0, str(EXAMPLES))

import _common
import sft
import toys


def _env():
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="")
    return env


def _run(args, cwd=REPO, timeout=300):
    return subprocess.run(args, check=False, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _stops(capsys, call, *args, **kwargs) -> str:
    """Runs a check that must stop the run; returns what it printed to stderr."""
    with pytest.raises(SystemExit) as stop:
        call(*args, **kwargs)
    assert stop.value.code == 2
    return capsys.readouterr().err


def _tiny_model(path: Path, data_dir: Path | None = None, with_tokenizer: bool = True) -> Path:
    texts = ["Below is an instruction", "The user has interacted with items"]
    if data_dir is not None:
        info = next((data_dir / "info").glob("*.txt"))
        texts += [line.split("\t")[0] for line in info.read_text().splitlines()]
    tokenizer = train_tokenizer(texts, vocab_size=400)
    tiny_causal_lm(tokenizer, hidden_size=16).save_pretrained(path)
    if with_tokenizer:
        tokenizer.save_pretrained(path)
    return path


# -- 1. a model folder without a tokenizer -----------------------------------------------------------------------------
def test_model_folder_without_tokenizer_is_an_error_naming_it(tmp_path, capsys):
    model = _tiny_model(tmp_path / "model", with_tokenizer=False)
    err = _stops(capsys, _common.check_model, str(model))
    assert f"--model_name_or_path {model}: the folder {model} holds a model but no tokenizer" in err
    # transformers itself would build an empty tokenizer from the config: the second net catches that too
    err = _stops(capsys, _common.load_tokenizer, str(model))
    assert "no tokenizer" in err and str(model) in err


@pytest.mark.parametrize("script", ["sft.py", "toys.py", "evaluate.py"])
def test_scripts_stop_on_a_model_without_tokenizer_before_training(tmp_path, script):
    data = write_amazon_folder(tmp_path / "data", category="Office_Products")
    model = _tiny_model(tmp_path / "model", with_tokenizer=False)
    out = [] if script == "evaluate.py" else ["--output_dir", str(tmp_path / "out")]
    proc = _run([sys.executable, str(EXAMPLES / script), "--model_name_or_path", str(model), "--data_dir", str(data),
                 "--category", "Office_Products", *out], timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"the folder {model} holds a model but no tokenizer" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


# -- 2. --smoke sets defaults; given arguments win; the run says what it used --------------------------------------------
def _parse_toys(argv):
    return _common.parse_args(toys.make_parser(), presets={"smoke": toys.SMOKE_DEFAULTS}, argv=argv)


def test_smoke_defaults_yield_to_given_arguments(tmp_path):
    (script_args, training_args, model_args), preset = _parse_toys(["--smoke"])
    assert (training_args.num_generations, training_args.per_device_train_batch_size, training_args.max_steps) == (
        toys.SMOKE_DEFAULTS["num_generations"], toys.SMOKE_DEFAULTS["per_device_train_batch_size"],
        toys.SMOKE_DEFAULTS["max_steps"])
    assert model_args.model_name_or_path is None and "num_generations" in preset

    (script_args, training_args, model_args), preset = _parse_toys(
        ["--smoke", "--num_generations", "64", "--per_device_train_batch_size", "64", "--learning_rate", "0.5",
         "--eval_num_beams", "20", "--model_name_or_path", "runs/sft"])
    assert (training_args.num_generations, training_args.per_device_train_batch_size) == (64, 64)
    assert training_args.learning_rate == 0.5 and script_args.eval_num_beams == 20
    assert model_args.model_name_or_path == "runs/sft"
    assert training_args.max_steps == toys.SMOKE_DEFAULTS["max_steps"]  # what was not given stays the smoke's
    assert "num_generations" not in preset and "max_steps" in preset

    # a --config file beats the smoke's defaults too, the command line beats both
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"num_generations": 2, "logging_steps": 7}))
    (_, training_args, _), preset = _parse_toys(["--smoke", "--config", str(config), "--logging_steps", "3"])
    assert (training_args.num_generations, training_args.logging_steps) == (2, 3)
    assert not {"num_generations", "logging_steps"} & preset


def test_settings_line_marks_the_smoke_defaults(capsys):
    _common.print_settings({"num_generations": 4, "learning_rate": 0.5}, {"num_generations"})
    out = capsys.readouterr().out
    assert "settings: num_generations=4* learning_rate=0.5 (* = --smoke default" in out


# -- G against the batch ---------------------------------------------------------------------------------------------
def test_g_that_does_not_fit_the_batch_names_both_numbers_and_a_fix():
    with pytest.raises(ValueError) as error:
        ReReConfig(output_dir="x", num_generations=64, per_device_train_batch_size=16)
    message = str(error.value)
    assert "num_generations (64)" in message and "per_device_train_batch_size (16)" in message
    assert "--per_device_train_batch_size 64" in message and "--num_generations 16" in message
    assert "generation_batch_size" not in message  # TRL's terms, not the user's
    # steps_per_generation (by default gradient_accumulation_steps) counts: 8 x 2 holds whole groups of 16
    assert ReReConfig(output_dir="x", num_generations=16, per_device_train_batch_size=8,
                      gradient_accumulation_steps=2).num_generations == 16


def test_toys_g_error_is_one_clean_line():
    proc = _run([sys.executable, str(EXAMPLES / "toys.py"), "--smoke", "--num_generations", "64"], timeout=120)
    assert proc.returncode == 2
    assert "error: num_generations (64)" in proc.stderr and "per_device_train_batch_size (8)" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- 3. the model default, --config and the recipes ------------------------------------------------------------------
@pytest.mark.parametrize("module", [sft, toys])
def test_help_shows_the_real_model_default_and_config(module):
    text = " ".join(module.make_parser().format_help().split())
    assert "--config YAML" in text
    entry = text.split("--model_name_or_path MODEL_NAME_OR_PATH,")[1]
    assert entry.split("(default: ")[1].startswith(f"{_common.DEFAULT_MODEL})")


def test_sft_recipe_is_the_papers_setting():
    recipe = yaml.safe_load((EXAMPLES / "recipes" / "sft_toys.yaml").read_text())
    accelerate = yaml.safe_load((EXAMPLES / "accelerate_configs" / "multi_gpu.yaml").read_text())
    per_step = accelerate["num_processes"] * recipe["per_device_train_batch_size"] * recipe["gradient_accumulation_steps"]
    assert (recipe["num_train_epochs"], recipe["learning_rate"], per_step) == (10, 3e-4, 128)  # METHOD.md section 5
    assert recipe["bf16"] and recipe["load_best_model_at_end"] and recipe["early_stopping_patience"]
    (script_args, training_args, model_args), _ = _common.parse_args(
        sft.make_parser(), argv=["--config", str(EXAMPLES / "recipes" / "sft_toys.yaml"), "--bf16", "false"])
    assert training_args.num_train_epochs == 10 and script_args.early_stopping_patience == 1
    assert model_args.model_name_or_path == recipe["model_name_or_path"]


def test_gpu_sensible_defaults_that_still_run_on_a_cpu(monkeypatch):
    import torch

    (script_args, training_args, model_args), _ = _parse_toys([])
    assert training_args.num_train_epochs == 2 and model_args.model_name_or_path == _common.DEFAULT_MODEL
    assert training_args.bf16 == (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    assert script_args.eval_batch_size is None
    (_, sft_args, _), _ = _common.parse_args(sft.make_parser(), argv=[])
    assert (sft_args.num_train_epochs, sft_args.learning_rate) == (10, 3e-4)
    assert sft_args.bf16 == training_args.bf16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _common.default_eval_batch_size() == 4
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _common.default_eval_batch_size() >= 32


# -- 4. splits ---------------------------------------------------------------------------------------------------------
def test_missing_train_split_suggests_the_one_there(tmp_path, capsys):
    data = write_amazon_folder(tmp_path, category="Office_Products", splits=("valid", "test"))
    err = _stops(capsys, _common.check_data_dir, data, "Office_Products", ("train", "test"), "title",
                 {"train": "--train_split", "test": "--eval_split"})
    assert f"{data}/train/Office_Products_5_*.csv" in err
    assert "the splits with files for Office_Products are test, valid; pass --train_split valid." in err


# -- 5. outputs and hints ----------------------------------------------------------------------------------------------
def test_title_format_on_a_sid_catalog_suggests_item_format_sid(tmp_path, capsys):
    data = write_minionerec_folder(tmp_path)
    err = _stops(capsys, _common.check_data_dir, data, "Industrial_and_Scientific", ("valid",), "title")
    assert "start with semantic IDs ('<a_" in err and "Pass --item_format sid" in err


def test_sid_data_with_a_title_model_suggests_the_cli_fix(tmp_path, capsys):
    from trl_rere.data import load_amazon

    data = write_minionerec_folder(tmp_path / "data")
    catalog, _ = load_amazon(data, "Industrial_and_Scientific", ("valid",), item_format="sid")
    tokenizer = train_tokenizer(["The user has interacted with items"], vocab_size=300)
    err = _stops(capsys, _common.check_item_vocab, tokenizer, catalog, "sid", "runs/title-model", f"--data_dir {data}")
    assert "python examples/sft.py --item_format sid --model_name_or_path runs/title-model" in err
    assert "add_sid_tokens" not in err
    # items written as text need no code tokens: nothing to check
    assert _common.check_item_vocab(tokenizer, catalog, "title", "runs/title-model", "") is None


def test_smoke_variants_write_to_their_own_folders():
    names = set()
    for argv in (["--smoke"], ["--smoke", "--item_format", "sid"], ["--smoke", "--data_dir", "d"],
                 ["--smoke", "--data_dir", "d", "--item_format", "sid"], [], ["--category", "Office_Products"]):
        (script_args, training_args, _), _ = _parse_toys(argv)
        names.add(toys.run_name(script_args, training_args.item_format))
    assert len(names) == 6 and "toys-smoke-synthetic-title" in names


def test_a_failed_run_under_accelerate_launch_quiet_prints_one_error(tmp_path):
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--quiet", "--num_processes", "1",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu"]
    proc = _run(launch + [str(EXAMPLES / "toys.py"), "--data_dir", str(tmp_path / "missing")], timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.count("error:") == 1 and "no such folder" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "CalledProcessError" not in proc.stderr


def test_evaluate_reports_users_and_no_cutoff_beyond_the_beams(tmp_path):
    data = write_amazon_folder(tmp_path / "data", category="Office_Products", splits=("valid", "test"))
    model = _tiny_model(tmp_path / "model", data)
    proc = _run([sys.executable, str(EXAMPLES / "evaluate.py"), "--model_name_or_path", str(model), "--data_dir",
                 str(data), "--category", "Office_Products", "--num_beams", "5", "--max_samples", "6"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ranking 6 of 16 test users over 32 items with 5 beams" in proc.stdout
    assert "HR@K for K > 5 beams left out (10, 20, 50)" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| metric |"))
    assert header.split("|")[2:-1] == [" @1 ", " @3 ", " @5 "]
    assert "6 users" in proc.stdout
    assert "FutureWarning" not in proc.stderr


def test_unreachable_hub_stops_at_once_with_the_offline_hint(monkeypatch, capsys):
    from huggingface_hub import constants

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(_common.socket, "create_connection", refuse)
    err = _stops(capsys, _common.check_model, "Qwen/Qwen2-0.5B")
    assert "the hub cannot be reached (set HF_HUB_OFFLINE=1" in err and "hf download Qwen/Qwen2-0.5B" in err
