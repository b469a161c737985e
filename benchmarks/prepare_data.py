"""Preparation from raw interactions: trl-rere's `examples/prepare_data.py amazon2018` against the authors'
`data/process.py` (github.com/sober-clever/ReRe) on the same generated Amazon Reviews 2018 files, and trl-rere alone
on 10 million interactions over 1 million items. Each run is a child process timed by wall clock, its peak memory
the child's maximum resident set size (`resource.getrusage(RUSAGE_CHILDREN)` of a one-child wrapper).

    python benchmarks/prepare_data.py --authors_script /path/to/ReRe/data/process.py

The authors' script is not part of this repository: pass the path of a copy (it needs `fire` and `loguru`). Without
it, only trl-rere's rows are measured. Prints a markdown table and writes benchmarks/prepare_data.md. The raw files
are generated once under --work (default benchmarks/_work/prepare_data) and reused.
"""

from __future__ import annotations

import argparse
import datetime
import filecmp
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trl_rere.data.prepare import file_stem, write_synthetic_amazon2018

MACHINE = "2 CPU cores, 24 GiB, shared with other work"
CATEGORY = "Bench"
# name: (interactions, items, users, compare with the authors)
SIZES = {"1M": (1_000_000, 100_000, 200_000, True), "10M": (10_000_000, 1_000_000, 2_000_000, False)}
WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[2:], cwd=sys.argv[1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "code, stderr = done.returncode, done.stderr.decode(errors='replace')\n"
    "wall = time.perf_counter() - start\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
    "print(json.dumps({'code': code, 'wall_s': wall, 'peak_bytes': peak, 'stderr': stderr[-2000:]}))\n"
)


def measure(command: list[str], cwd: Path) -> dict:
    """Runs `command` in `cwd` as the only child of a wrapper process; returns its exit code, wall time, peak RSS."""
    # This checkout's trl_rere, whatever the environment has installed.
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(cwd), *command], capture_output=True, text=True, check=False, env=env
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(f"the wrapper failed: {result.stderr[-2000:]}")
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    if stats["code"] != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {stats['code']}:\n{stats['stderr']}")
    del stats["stderr"]
    return stats


def raw_files(work: Path, name: str) -> Path:
    interactions, items, users, _ = SIZES[name]
    folder = work / f"raw_{name}"
    if not (folder / "done").exists():
        print(f"generating {name}: {interactions:,} interactions, {items:,} items, {users:,} users", flush=True)
        write_synthetic_amazon2018(
            folder, num_interactions=interactions, num_items=items, num_users=users, seed=0, category=CATEGORY
        )
        (folder / "done").touch()
    return folder


def count_rows(folder: Path, stem: str) -> tuple[int, int]:
    def lines(path: Path) -> int:
        with open(path, "rb") as f:
            return sum(1 for _ in f)

    rows = sum(lines(folder / s / f"{stem}.csv") - 1 for s in ("train", "valid", "test"))
    return lines(folder / "info" / f"{stem}.txt"), rows


def same_output(a: Path, b: Path, stem: str) -> bool:
    names = [f"info/{stem}.txt"] + [f"{s}/{stem}.csv" for s in ("train", "valid", "test")]
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def run(args) -> list[dict]:
    work = Path(args.work)
    stem = file_stem(CATEGORY, 5, (1996, 10), (2018, 11))
    # What the command pays before any work: the import of the preparation code (datasets, polars, numpy; the
    # package's __init__ imports its names lazily, so no torch or TRL).
    imports = measure([sys.executable, "-c", "import trl_rere.data.prepare"], ROOT)
    rows = [{"size": "-", "tool": "python -c 'import trl_rere.data.prepare'", "items": 0, "rows": 0, **imports}]
    print(rows[0], flush=True)
    for name in args.sizes:
        raw = raw_files(work, name)
        out = work / f"ours_{name}"
        shutil.rmtree(out, ignore_errors=True)
        ours = measure(
            [
                sys.executable,
                str(ROOT / "examples" / "prepare_data.py"),
                "amazon2018",
                "--reviews",
                str(raw / f"{CATEGORY}.json"),
                "--meta",
                str(raw / f"meta_{CATEGORY}.json"),
                "--category",
                CATEGORY,
                "--out",
                str(out),
                "--no_progress",
            ],
            ROOT,
        )
        num_items, num_rows = count_rows(out, stem)
        row = {"size": name, "tool": "trl-rere", "items": num_items, "rows": num_rows, **ours}
        rows.append(row)
        print(row, flush=True)
        if name == "10M":  # the bounded-memory reader (the default only above 1 GiB of JSON lines)
            blocks = measure(
                [sys.executable, str(ROOT / "examples" / "prepare_data.py"), "amazon2018", "--reviews",
                 str(raw / f"{CATEGORY}.json"), "--meta", str(raw / f"meta_{CATEGORY}.json"), "--category", CATEGORY,
                 "--out", str(work / "ours_blocks"), "--no_progress", "--read_block_mb", "64"],
                ROOT,
            )
            same = same_output(out, work / "ours_blocks", stem)
            rows.append({"size": name, "tool": "trl-rere, --read_block_mb 64", "items": num_items, "rows": num_rows,
                         **blocks, "identical_to_whole": same})
            print(rows[-1], flush=True)
            shutil.rmtree(work / "ours_blocks", ignore_errors=True)
        if SIZES[name][3] and args.authors_script:
            # The authors' script reads ../meta_{category}.json and ../{category}.json and writes to ./
            theirs_dir = work / f"authors_{name}" / "run"
            shutil.rmtree(theirs_dir.parent, ignore_errors=True)
            theirs_dir.mkdir(parents=True)
            for f in (f"{CATEGORY}.json", f"meta_{CATEGORY}.json"):
                os.symlink(raw / f, theirs_dir.parent / f)
            theirs = measure(
                [
                    sys.executable,
                    str(Path(args.authors_script).resolve()),
                    "--category",
                    CATEGORY,
                    "--K",
                    "5",
                    "--st_year",
                    "1996",
                    "--st_month",
                    "10",
                    "--ed_year",
                    "2018",
                    "--ed_month",
                    "11",
                ],
                theirs_dir,
            )
            their_items, their_rows = count_rows(theirs_dir, stem)
            row["identical"] = same_output(out, theirs_dir, stem)
            theirs_row = {"size": name, "tool": "authors' process.py", "items": their_items, "rows": their_rows}
            rows.append(theirs_row | theirs | {"identical": row["identical"]})
            print(rows[-1], flush=True)
            shutil.rmtree(theirs_dir.parent, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        (
            "| interactions | run | items | rows written | wall (s) | wall without the import (s) | peak RSS (GiB) "
            "| speed-up (whole / without the import) | same files |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    authors = {r["size"]: r["wall_s"] for r in rows if r["tool"].startswith("authors")}
    imports = next(r["wall_s"] for r in rows if r["size"] == "-")
    for r in rows:
        if r["size"] == "-":
            lines.append(f"| - | {r['tool']} | | | {r['wall_s']:.1f} | | {r['peak_bytes'] / 2**30:.2f} | | |")
            continue
        ours = r["tool"].startswith("trl-rere")
        net = r["wall_s"] - imports if ours else r["wall_s"]
        speedup = ""
        if ours and r["size"] in authors:
            speedup = f"{authors[r['size']] / r['wall_s']:.1f}x / {authors[r['size']] / net:.1f}x"
        same = {True: "yes, byte for byte", False: "NO"}.get(r.get("identical"), "")
        if "identical_to_whole" in r:
            same = "as the whole-file run" if r["identical_to_whole"] else "NO: differs from the whole-file run"
        lines.append(
            f"| {SIZES[r['size']][0]:,} | {r['tool']} | {r['items']:,} | {r['rows']:,} | {r['wall_s']:.1f} | "
            f"{net:.1f} | {r['peak_bytes'] / 2**30:.2f} | {speedup} | {same} |"
        )
    return "\n".join(lines)


def goals(rows: list[dict]) -> str:
    """The issue's goals against this run: >= 10x the authors' script; 10M interactions under 5 minutes and 4 GiB."""
    lines = []
    imports = next(r["wall_s"] for r in rows if r["size"] == "-")
    for r in rows:
        theirs = [t for t in rows if t["size"] == r["size"] and t["tool"].startswith("authors")]
        if r["tool"] == "trl-rere" and theirs:
            whole, net = theirs[0]["wall_s"] / r["wall_s"], theirs[0]["wall_s"] / (r["wall_s"] - imports)
            met = "met" if whole >= 10 else ("met only without the import" if net >= 10 else "not met")
            lines.append(
                f"- >= 10x the authors' script ({r['size']}): {met} ({whole:.1f}x whole, {net:.1f}x without the import)"
            )
        if r["tool"].startswith("trl-rere") and r["size"] == "10M":
            ok = r["wall_s"] < 300 and r["peak_bytes"] < 4 * 2**30
            lines.append(
                f"- 10M under 5 minutes and 4 GiB ({r['tool']}): {'met' if ok else 'not met'} "
                f"({r['wall_s']:.0f} s, {r['peak_bytes'] / 2**30:.2f} GiB)"
            )
    return "\n".join(lines)


def render(rows: list[dict], command: str) -> str:
    body = table(rows)
    sizes = ", ".join(f"{n}: {SIZES[n][0]:,} interactions, {SIZES[n][1]:,} items, {SIZES[n][2]:,} users" for n in SIZES)
    page = f"""# Preparation from raw interactions

`examples/prepare_data.py amazon2018` (trl-rere, polars) against the authors' `data/process.py`
(github.com/sober-clever/ReRe, commit 7d69eee, pure Python), one run each, on the same generated Amazon Reviews 2018
JSON-lines files (`trl_rere.data.prepare.write_synthetic_amazon2018`, seed 0; power-law item popularity and user
activity; {sizes}), window 1996-10..2018-11, 5-core. Wall time and peak resident memory of the whole command
(Python start-up and imports included); the first row is the import of `trl_rere.data.prepare` alone (no torch or
TRL: `trl_rere/__init__` imports its names on first use), and "without the import" subtracts it. "Same files": the
info and split files of both runs compared byte for byte. `--read_block_mb 64` parses the JSON lines 64 MiB at a
time and keeps users and items as categoricals (the default above 1 GiB of reviews; the 10M file is 0.9 GiB).

Command: `{command}`
Machine: {MACHINE} ({platform.python_implementation()} {platform.python_version()}).
Date: {datetime.date.today().isoformat()}

{body}

Goals:

{goals(rows)}
"""
    return page


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authors_script", default=None, help="Path of a copy of the authors' data/process.py.")
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "_work" / "prepare_data"), help="Scratch folder.")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES), help="Which data sets.")
    parser.add_argument("--page", default=str(ROOT / "benchmarks" / "prepare_data.md"), help="Markdown page to write.")
    args = parser.parse_args(argv)
    rows = run(args)
    command = "python benchmarks/prepare_data.py" + (
        " --authors_script PATH/TO/process.py" if args.authors_script else ""
    )
    if args.sizes != list(SIZES):
        command += " --sizes " + " ".join(args.sizes)
    page = render(rows, command)
    print(table(rows) + "\n\n" + goals(rows))
    Path(args.page).write_text(page, encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
