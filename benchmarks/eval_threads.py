"""Why `examples/evaluate.py` runs at different speeds under `python` and under `accelerate launch` on a CPU.

`python` leaves torch at its default of one intra-op thread per core; `accelerate launch` exports OMP_NUM_THREADS
(`--num_cpu_threads_per_process`: 1 by default, or with `--cpu` the physical cores divided by the processes). This
runs the same evaluation (a tiny local model, one data folder, the same users and beams) under each setting and
prints the ranking time that evaluate.py itself reports (imports and model loading excluded).

    python benchmarks/eval_threads.py [--data_dir ../shared/data/amazon --category Industrial_and_Scientific]

Writes benchmarks/eval_threads.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def _env(threads: str | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="")
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None, help="Default: a synthetic folder (trl_rere.testing).")
    parser.add_argument("--category", default="Industrial_and_Scientific")
    parser.add_argument("--split", default="test")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="eval-threads-"))
    data_dir = args.data_dir
    source = f"`{args.category}/{args.split}` from {data_dir}" if data_dir else "a synthetic catalog of 200 items"
    if data_dir is None:
        from trl_rere.testing import write_amazon_folder

        data_dir = str(write_amazon_folder(work / "data", category=args.category, num_items=200, users_per_split=64))
    model = work / "tiny-model"
    subprocess.run([sys.executable, str(EXAMPLES / "make_tiny_model.py"), "--data_dir", data_dir, "--category",
                    args.category, "--split", args.split, "--output_dir", str(model)], env=_env(None), check=True,
                   capture_output=True)
    evaluate = [str(EXAMPLES / "evaluate.py"), "--model_name_or_path", str(model), "--data_dir", data_dir,
                "--category", args.category, "--split", args.split, "--num_beams", str(args.beams),
                "--max_samples", str(args.users)]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--quiet", "--num_processes", "1",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    settings = [
        ("python", None, [sys.executable, *evaluate]),
        ("OMP_NUM_THREADS=1 python", "1", [sys.executable, *evaluate]),
        ("accelerate launch", None, [*launch, *evaluate]),
        ("accelerate launch --cpu", None, [*launch, "--cpu", *evaluate]),
    ]
    rows = []
    for name, threads, command in settings:
        times, used = [], "?"
        for _ in range(args.repeats):
            proc = subprocess.run(command, check=False, env=_env(threads), capture_output=True, text=True)
            match = re.search(r"ranked [\d,]+ users in ([\d.]+) s \((\d+) torch threads", proc.stdout)
            if proc.returncode != 0 or match is None:
                raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
            times.append(float(match.group(1)))
            used = match.group(2)
        rows.append((name, used, min(times), sum(times) / len(times)))
    base = rows[0][2]
    lines = [f"| launch | torch threads | best of {args.repeats} (s) | mean (s) | vs python |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {t} | {best:.2f} | {mean:.2f} | {base / best:.2f}x |" for n, t, best, mean in rows]
    table = "\n".join(lines)
    print(table)
    command = "python benchmarks/eval_threads.py " + " ".join(sys.argv[1:])
    page = (f"# Evaluation speed by thread setting (CPU)\n\n`{command.strip()}`\n\nMachine: 2 CPU cores, 24 GiB, "
            f"shared with other jobs (load average about 4). Date: {datetime.date.today()}. Ranking {args.users} "
            f"users of {source} with {args.beams} beams with a tiny model (examples/make_tiny_model.py); the time "
            f"evaluate.py reports for the ranking alone.\n\n{table}\n")
    (REPO / "benchmarks" / "eval_threads.md").write_text(page)


if __name__ == "__main__":
    main()
