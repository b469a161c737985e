"""Fixtures for the multi-process tests: 2 CPU processes under `accelerate launch` (DDP, DeepSpeed ZeRO-2/3).

These tests start real process groups and take minutes; they run with the rest of the suite (CI included), and
`-m distributed` selects them alone, `-m "not distributed"` leaves them out. Everything a launch needs is built once per
session: DeepSpeed's CPU comm op (compiled with g++ on first use, so two ranks must not race to build it) and the tiny
SFT-ed model with its synthetic catalog. Launches are memoised by name, so tests that share a run (the ZeRO-3 run is
used by the sharding, checkpoint and resume tests) launch it once; a test whose run failed fails with the run's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest


HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUN_SCRIPT = HERE / "run_rere.py"
CONFIGS = HERE / "configs"

LAUNCH_TIMEOUT_S = int(os.environ.get("RERE_LAUNCH_TIMEOUT", "240"))  # per launch; a hang fails the test
BUILD_TIMEOUT_S = 900  # compiling DeepSpeed's comm op takes ~40 s on an idle machine, minutes on a busy one
PREPARE_TIMEOUT_S = 300


def launch_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CUDA_VISIBLE_DEVICES="",
        DS_ACCELERATOR="cpu",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        TRL_EXPERIMENTAL_SILENCE="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_DEEPSPEED"):
        env.pop(key, None)
    return env


def run_command(cmd: list[str], log: Path, timeout: float, cwd: Path = REPO) -> tuple[int | None, float]:
    """Runs `cmd` in its own process group, output to `log`; on timeout kills the whole group. Returns (rc, seconds);
    rc is None after a timeout."""
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=launch_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            if proc.poll() is None or rc is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
                except ProcessLookupError:
                    pass
                proc.wait()
    return rc, time.monotonic() - start


def log_tail(log: Path, chars: int = 6000) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    lines = [ln for ln in text.splitlines() if "Warning" not in ln and "warnings.warn" not in ln]
    return "\n".join(lines)[-chars:]


@dataclass
class Run:
    name: str
    out: Path
    log: Path
    rc: int | None
    seconds: float
    results: dict[int, dict] = field(default_factory=dict)

    def rank(self, r: int) -> dict:
        return self.results[r]

    @property
    def ranks(self) -> list[dict]:
        return [self.results[r] for r in sorted(self.results)]


@pytest.fixture(scope="session")
def deepspeed_op(tmp_path_factory):
    """Builds DeepSpeed's shared-memory CPU comm op once, before any 2-rank launch can race to compile it (cached
    under ~/.cache/torch_extensions or $TORCH_EXTENSIONS_DIR, so later sessions only load it)."""
    pytest.importorskip("deepspeed")
    code = (
        "from deepspeed.accelerator import get_accelerator\n"
        "acc = get_accelerator()\n"
        "assert acc._name == 'cpu', acc._name\n"
        "acc.create_op_builder('ShareMemCommBuilder').load()\n"
        "print('ShareMemCommBuilder ok')\n"
    )
    log = tmp_path_factory.mktemp("rere-ds-op") / "build.log"
    rc, seconds = run_command([sys.executable, "-c", code], log, BUILD_TIMEOUT_S)
    if rc != 0:
        pytest.fail(f"building DeepSpeed's CPU comm op failed (rc={rc}, {seconds:.0f} s):\n{log_tail(log)}")
    return seconds


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Path:
    """The tiny tokenizer, SFT-ed Qwen2 and synthetic catalog/dataset, prepared once for all launches."""
    path = tmp_path_factory.mktemp("rere-assets")
    log = path.parent / "prepare.log"
    rc, seconds = run_command([sys.executable, str(RUN_SCRIPT), "prepare", str(path)], log, PREPARE_TIMEOUT_S)
    if rc != 0 or not (path / "data.json").exists():
        pytest.fail(f"preparing the test model failed (rc={rc}, {seconds:.0f} s):\n{log_tail(log)}")
    return path


class Launcher:
    """Memoised `accelerate launch` runs of run_rere.py."""

    def __init__(self, root: Path, assets: Path):
        self.root = root
        self.assets = assets
        self.runs: dict[str, Run] = {}
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, config: str, *args: str, timeout: float = LAUNCH_TIMEOUT_S) -> Run:
        if name in self.runs:
            run = self.runs[name]
        else:
            out = self.root / name
            log = self.root / f"{name}.log"
            cmd = [
                sys.executable, "-m", "accelerate.commands.launch",
                "--config_file", str(CONFIGS / config),
                "--main_process_port", "0",
                str(RUN_SCRIPT), "train", "--assets", str(self.assets), "--out", str(out), *args,
            ]  # fmt: skip
            rc, seconds = run_command(cmd, log, timeout)
            run = Run(name, out, log, rc, seconds)
            for f in sorted((out / "results").glob("rank*.json")) if (out / "results").is_dir() else []:
                data = json.loads(f.read_text())
                run.results[int(data["rank"])] = data
            self.runs[name] = run
            self.timings[name] = seconds
            print(f"\n[launch {name}] rc={rc} {seconds:.1f} s", flush=True)
        if run.rc is None:
            pytest.fail(f"launch {name!r} timed out after {timeout:.0f} s (hang?); killed. Log tail:\n"
                        f"{log_tail(run.log)}")
        # About 1 launch in 40 aborts at exit *after* finishing ("terminate called without an active exception"):
        # a run is judged by the results both ranks wrote, not by the launcher's exit status.
        if len(run.results) != 2 or not all(r.get("ok") for r in run.results.values()):
            pytest.fail(f"launch {name!r} did not finish on both ranks (rc={run.rc}, results from ranks "
                        f"{sorted(run.results)}). Log tail:\n{log_tail(run.log)}")
        return run


@pytest.fixture(scope="session")
def launch(tmp_path_factory, assets) -> Launcher:
    """Launches plain DDP runs (no DeepSpeed needed)."""
    return Launcher(tmp_path_factory.mktemp("rere-runs"), assets)


@pytest.fixture(scope="session")
def ds_launch(launch, deepspeed_op) -> Launcher:
    """The same launcher, once DeepSpeed's comm op is built."""
    return launch


@pytest.fixture(scope="session")
def run_launch():
    """`run_command` and `log_tail` for tests that launch another script than run_rere.py (the examples): a test
    module cannot import them from here, since tests/ and tests/distributed/ both have a conftest module."""
    return run_command, log_tail
