"""`examples/toys.py --smoke` itself under every shipped accelerate config with 2 CPU processes, launched the way the
script's docstring documents it (the configs are written for GPUs: `--num_processes 2 --mixed_precision no`).

Before the smoke model was built collective-free, rank 1 went past its barrier (matched by one inside the SFT
trainer on rank 0) and failed loading `<output_dir>/smoke-model` before it existed. Tiny settings: 10 SFT steps, 4 RL
steps and 6 ranked users, about 20-35 s per launch once DeepSpeed's comm op is built.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest


pytestmark = pytest.mark.distributed

REPO = Path(__file__).resolve().parents[2]
LAUNCH_TIMEOUT_S = int(os.environ.get("RERE_LAUNCH_TIMEOUT", "240"))
DATA = REPO.parent / "shared" / "data" / "amazon"
EVAL_USERS = 6


@pytest.mark.parametrize("config", ["multi_gpu.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml"])
def test_toys_smoke_under_shipped_accelerate_config(request, tmp_path, run_launch, config):
    run_command, log_tail = run_launch
    if "deepspeed" in config:
        request.getfixturevalue("deepspeed_op")  # built once, before two ranks race to compile it
    data = ["--data_dir", str(DATA)] if DATA.is_dir() else []  # the documented command; synthetic without the data
    out = tmp_path / "out"
    log = tmp_path / "launch.log"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "examples" / "accelerate_configs" / config),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "0",
        str(REPO / "examples" / "toys.py"), "--smoke", *data, "--output_dir", str(out),
        "--max_eval_samples", str(EVAL_USERS), "--smoke_sft_steps", "10",
        # the target in every group, so that every step has a gradient to check across the processes
        "--add_gt", "true",
    ]  # fmt: skip
    rc, seconds = run_command(cmd, log, LAUNCH_TIMEOUT_S)
    print(f"\n[toys.py {config}] rc={rc} {seconds:.1f} s", flush=True)
    assert rc is not None, f"timed out after {LAUNCH_TIMEOUT_S} s:\n{log_tail(log)}"
    # A launch can abort at exit after finishing (see conftest.py): judge it by what it wrote.
    assert (out / "trainer_state.json").exists() and (out / "ranking_metrics.json").exists(), log_tail(log)
    text = log.read_text(errors="replace")
    assert rc == 0 or "terminate called without an active exception" in text, log_tail(log)

    metrics = json.loads((out / "ranking_metrics.json").read_text())
    assert metrics["num_examples"] == metrics["before_rl"]["num_examples"] == EVAL_USERS
    assert text.count("| metric | before RL | after RL | random ranking |") == 1  # printed by the main process only
    state = json.loads((out / "trainer_state.json").read_text())
    steps = [h for h in state["log_history"] if "reward" in h and "grad_norm" in h]
    assert len(steps) == 4 and all(s["reward_std"] > 0 and s["grad_norm"] > 0 for s in steps)
    # Both processes trained together: a step takes 2 prompts per process, so 4 steps cover 16 rows (8 on one).
    data_line = next(line for line in text.splitlines() if line.startswith("data: "))
    rows = int(data_line.split("training on ")[1].split(" of ")[0].replace(",", ""))
    assert steps[-1]["epoch"] * rows == pytest.approx(16, abs=0.5), (steps[-1]["epoch"], rows)
