# Copyright 2026 The trl-rere authors. Licensed under the Apache License, Version 2.0.
"""Checks shared by the example scripts (toys.py, sft.py, evaluate.py).

They run before anything heavy (tokenizers, models, process groups), so that a typo in a path or a missing download
stops a run within seconds, with a message that names what was given and what was looked for, instead of failing
minutes later deep inside a trainer (or, worse, quietly running on something else).
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import NoReturn

import torch


DATA_LAYOUT = "info/{category}_5_*.txt (the catalog) and {split}/{category}_5_*.csv (one file per split)"
DATA_HELP = (
    "Pass the folder that holds info/, train/, valid/ and test/ as published with the ReRe and D3 code "
    "(github.com/sober-clever/ReRe, data/Amazon/), or with --item_format sid the folder that also holds index/, in "
    "MiniOneRec's layout (github.com/AkaliKong/MiniOneRec, data/Amazon/)."
)


def fail(message: str) -> NoReturn:
    """Prints `error: message` to stderr and exits with status 2 (a usage error, as argparse does)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


# -- data ---------------------------------------------------------------------------------------------------------
def _patterns(category: str, splits: tuple[str, ...], item_format: str = "title") -> list[str]:
    escaped = glob.escape(category)
    index = [f"index/{escaped}.index.json"] if item_format == "sid" else []
    return index + [f"info/{escaped}_5_*.txt"] + [f"{glob.escape(split)}/{escaped}_5_*.csv" for split in splits]


def _categories_in(root: Path) -> list[str]:
    """Category keys that have a catalog under `root/info` (the file-name part before `_5_`)."""
    names = {p.name.split("_5_")[0] for p in (root / "info").glob("*_5_*.txt")}
    return sorted(names)


def check_data_dir(
    data_dir: str | os.PathLike, category: str, splits: tuple[str, ...], item_format: str = "title"
) -> Path:
    """Returns `data_dir` as a Path once it holds the catalog and every split file of `category`; stops otherwise.

    Only the folder that holds `info/` (and, for semantic IDs, `index/`) is accepted. A parent of it (`../shared/data`
    for `../shared/data/amazon`) is refused with a hint rather than searched, so that the files a run reads are always
    the ones the user named.
    """
    root = Path(data_dir).expanduser()
    patterns = _patterns(category, splits, item_format)
    looked = ", ".join(str(root / p) for p in patterns)
    marker = "index" if item_format == "sid" else "info"
    if not root.is_dir():
        fail(f"--data_dir {data_dir}: no such folder (resolved to {root.resolve()}); looked for {looked}. {DATA_HELP}")
    if not (root / marker).is_dir():
        below = sorted(str(p) for p in root.iterdir() if p.is_dir() and (p / marker).is_dir())
        hint = f" Did you mean --data_dir {below[0]}?" if below else ""
        fail(f"--data_dir {data_dir} has no {marker}/ folder; looked for {looked}.{hint} {DATA_HELP}")
    missing = [str(root / p) for p in patterns if not glob.glob(str(root / p))]
    if missing:
        known = _categories_in(root)
        have = f" Categories with a catalog in {root / 'info'}: {', '.join(known)}." if known else ""
        fail(f"--data_dir {data_dir}, --category {category}: no file matches {', '.join(missing)}.{have} {DATA_HELP}")
    return root


def load_data(data_dir: str | os.PathLike, category: str, splits: tuple[str, ...], item_format: str = "title"):
    """`trl_rere.load_amazon` after `check_data_dir`; a file that exists but cannot be read stops the run too."""
    from trl_rere.data import load_amazon

    root = check_data_dir(data_dir, category, splits, item_format)
    try:
        return load_amazon(root, category, splits=splits, item_format=item_format)
    except (OSError, ValueError) as error:  # DataError, CatalogError and UnicodeDecodeError are ValueErrors
        fail(f"cannot load {category} from {root}: {error}")


# -- models -------------------------------------------------------------------------------------------------------
def _is_local_path(name: str) -> bool:
    """Whether `name` can only mean a local path (a hub id is `name` or `org/name` and starts with neither `.`, `~`
    nor `/`)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith((".", "~", os.sep, "/")) or os.path.isabs(name) or name.count("/") > 1:
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def check_model(name: str, argument: str = "--model_name_or_path") -> None:
    """Stops at once, saying what to do, when `name` is neither a local model folder nor loadable from the hub.

    Only the config is read (a few kB), so this takes seconds even for a large model. A name that can only be a path
    is reported as a missing path; a hub id that cannot be fetched (offline, private, misspelled) gets the download
    command to run elsewhere.
    """
    from transformers import AutoConfig

    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            fail(f"{argument} {name}: {path.resolve()} is a file; pass the folder with config.json and the weights")
        if not (path / "config.json").is_file():
            fail(f"{argument} {name}: the folder {path.resolve()} has no config.json, so it is not a saved model "
                 f"(save one with save_pretrained, or pass the checkpoint folder inside it)")
        return
    if _is_local_path(name):
        fail(f"{argument} {name}: no such folder (resolved to {path.resolve()})")
    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as error:
        local = name.split("/")[-1]
        fail(
            f"{argument} {name}: not a local folder, and the hub gave no model ({str(error).splitlines()[0]}). "
            f"Without hub access, download it on a machine that has it (`hf download {name} --local-dir {local}`), "
            f"copy the folder here and pass {argument} {local}."
        )


# -- devices ------------------------------------------------------------------------------------------------------
def apply_cpu_defaults(args) -> None:
    """Device defaults for TrainingArguments on a machine without CUDA, as `ReReConfig.__post_init__` applies them.

    Call before `TrainingArguments.__post_init__`: TRL turns `bf16` on by default, which transformers refuses without
    a GPU. A multi-process CPU launch needs gloo (or accelerate and DeepSpeed disagree on the world size) and
    `use_cpu` (or the Trainer sees the process group but runs as a single process, and the ranks fall out of step);
    `accelerate launch --cpu` is no substitute, as it starts a single process whatever `--num_processes` says.
    Values the user set explicitly are kept.
    """
    if torch.cuda.is_available():
        return
    if getattr(args, "bf16", None) is None and not getattr(args, "fp16", False):
        args.bf16 = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if getattr(args, "ddp_backend", None) is None:
            args.ddp_backend = "gloo"
        args.use_cpu = True


# -- output folder ------------------------------------------------------------------------------------------------
def leave_output_dir_unset(parser) -> None:
    """Makes `--output_dir` default to "" instead of None, so that a run can tell it was not given.

    TrainingArguments turns None into "trainer_output" in the current folder, which for a run started from a clone
    is the repository itself. With "" the script picks a folder under `runs/` (ignored by git) instead; see
    `default_output_dir`. A `--config` file that sets `output_dir` still wins, as does the command line.
    """
    parser.set_defaults(output_dir="")


def default_output_dir(args, name: str) -> str:
    """Sets `args.output_dir` to `runs/<name>` when it was not given, and returns it."""
    if not args.output_dir:
        args.output_dir = os.path.join("runs", name)
    return args.output_dir


# -- alignment tasks ----------------------------------------------------------------------------------------------
def mix_alignment_tasks(kind: str, next_item, tasks, catalog, data_dir, category: str, item_format: str, seed: int,
                        completion_template: str | None = None):
    """`--align_tasks`: MiniOneRec's alignment tasks mixed with the next-item rows (`kind` "sft" or "rl", see
    `trl_rere.data.mix_sft_tasks` / `mix_rl_tasks`), from the item texts `index/{category}.item.json` under
    `data_dir`; stops with a message naming the option when they cannot be built."""
    from trl_rere import get_item_format
    from trl_rere.data import load_item_texts, mix_rl_tasks, mix_sft_tasks

    if item_format != "sid":
        fail(f"--align_tasks {' '.join(tasks)}: the alignment tasks tie semantic IDs to item texts; they need "
             f"--item_format sid and MiniOneRec's layout (got --item_format {item_format})")
    if data_dir is None:
        fail(f"--align_tasks {' '.join(tasks)}: the tasks read the item texts (index/{category}.item.json); pass "
             f"--data_dir with MiniOneRec's files")
    try:
        texts = load_item_texts(data_dir, category, catalog)
        if kind == "sft":
            fmt = get_item_format(item_format, completion_template)
            mixed = mix_sft_tasks(next_item, tasks, catalog, texts, seed=seed, item_format=fmt)
        else:
            mixed = mix_rl_tasks(next_item, tasks, catalog, texts, seed=seed)
    except (OSError, ValueError) as error:  # DataError is a ValueError
        fail(f"--align_tasks {' '.join(tasks)}: {error}")
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"alignment tasks {', '.join(tasks)}: {len(mixed) - len(next_item):,} rows next to the "
              f"{len(next_item):,} next-item rows", flush=True)
    return mixed
