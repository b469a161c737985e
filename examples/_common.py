# Copyright 2026 The trl-rere authors. Licensed under the Apache License, Version 2.0.
"""Checks shared by the example scripts (toys.py, sft.py, evaluate.py).

They run before anything heavy (tokenizers, models, process groups), so that a typo in a path or a missing download
stops a run within seconds, with a message that names what was given and what was looked for, instead of failing
minutes later deep inside a trainer (or, worse, quietly running on something else).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import socket
import sys
import warnings
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlparse

from trl_rere.item_format import get_item_format

# transformers 5 renamed gradient checkpointing to activation checkpointing and warns on every use of the old names,
# which TRL 1.16 still calls while it prepares a model for generation: several FutureWarnings per run that name
# nothing the user can change. (Our configs set the new name; see trl_rere.config.apply_device_defaults.)
warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing\w*` is deprecated", category=FutureWarning)

# Without CUDA, DeepSpeed (imported by transformers when a Trainer starts) warns in every process that it falls back
# to the CPU accelerator; naming that accelerator up front is the same choice without the warning.
if "DS_ACCELERATOR" not in os.environ:
    import torch

    if not torch.cuda.is_available() and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        os.environ["DS_ACCELERATOR"] = "cpu"

DEFAULT_MODEL = "Qwen/Qwen2-0.5B"


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
def _categories_in(root: Path) -> list[str]:
    """Category keys that have a catalog under `root/info` (the file-name part before `_5_`)."""
    names = {p.name.split("_5_")[0] for p in (root / "info").glob("*_5_*.txt")}
    return sorted(names)


def check_data_dir(
    data_dir: str | os.PathLike,
    category: str,
    splits: tuple[str, ...],
    item_format: str = "title",
    split_arguments: dict[str, str] | None = None,
) -> Path:
    """Returns `data_dir` as a Path once it holds the catalog and every split file of `category`; stops otherwise.

    Only the folder that holds `info/` (and, for semantic IDs, `index/`) is accepted. A parent of it (`../shared/data`
    for `../shared/data/amazon`) is refused with a hint rather than searched, so that the files a run reads are always
    the ones the user named. `split_arguments` maps a split to the argument that named it (`{"valid": "--train_split"}`),
    so that a missing split is reported with the argument to change and the splits that do exist.
    """
    from trl_rere.data import get_layout

    root = Path(data_dir).expanduser()
    layout = get_layout(item_format)  # the files, and the folder that marks a dataset's root, are the layout's
    patterns = layout.patterns(category, splits)
    looked = ", ".join(str(root / p) for p in patterns)
    marker = layout.marker
    if not root.is_dir():
        fail(f"--data_dir {data_dir}: no such folder (resolved to {root.resolve()}); looked for {looked}. {DATA_HELP}")
    if not (root / marker).is_dir():
        below = sorted(str(p) for p in root.iterdir() if p.is_dir() and (p / marker).is_dir())
        hint = f" Did you mean --data_dir {below[0]}?" if below else ""
        fail(f"--data_dir {data_dir} has no {marker}/ folder; looked for {looked}.{hint} {DATA_HELP}")
    missing = [str(root / p) for p in patterns if not glob.glob(str(root / p))]
    catalog_pattern = str(root / f"info/{glob.escape(category)}_5_*.txt")
    if missing and all(m.endswith(".csv") for m in missing):  # the catalog is there, a split is not
        _fail_on_missing_split(root, category, splits, split_arguments or {}, missing)
    if missing:
        known = _categories_in(root)
        have = f" Categories with a catalog in {root / 'info'}: {', '.join(known)}." if known else ""
        fail(f"--data_dir {data_dir}, --category {category}: no file matches {', '.join(missing)}.{have} {DATA_HELP}")
    if get_item_format(item_format).code_pattern is None:  # items written as text: is the catalog text?
        _check_titles_are_not_sids(min(glob.glob(catalog_pattern)))
    return root


def _fail_on_missing_split(root: Path, category: str, splits, split_arguments: dict[str, str], missing) -> NoReturn:
    """The catalog is there but a split is not: name the splits that are there and the argument to change."""
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and glob.glob(str(p / f"{glob.escape(category)}_5_*.csv")))
    lacking = [s for s in splits if not glob.glob(str(root / glob.escape(s) / f"{glob.escape(category)}_5_*.csv"))]
    fixes = []
    for split in lacking:
        argument = split_arguments.get(split)
        # the public Industrial / Office files have only valid/ and test/: train on valid, rank test
        choices = [p for p in ("valid", *present) if p in present and p not in lacking]
        if argument and choices:
            fixes.append(f"pass {argument} {choices[0]}")
    have = f"the splits with files for {category} are {', '.join(present)}" if present else f"no split has files for {category}"
    fix = f"; {' and '.join(fixes)}" if fixes else ""
    fail(f"--data_dir {root}, --category {category}: no file matches {', '.join(missing)}: {have}{fix}.")


_SID = re.compile(r"(<[A-Za-z]+_\d+>)+")


def _check_titles_are_not_sids(info_file: str) -> None:
    """A catalog whose lines start with semantic IDs (`<a_12><b_40><c_7>\\ttitle\\tid`, MiniOneRec's layout) read as
    titles gives items named `<a_12>...`: stop with the flag that reads it as meant."""
    with open(info_file, encoding="utf-8", errors="replace") as f:
        first = f.readline().split("\t", 1)[0].strip()
    if _SID.fullmatch(first):
        fail(f"{info_file}: the catalog's items start with semantic IDs ({first!r}), which the title format would "
             f"read as part of each title. Pass --item_format sid (with the folder that also holds index/).")


def load_data(
    data_dir: str | os.PathLike,
    category: str,
    splits: tuple[str, ...],
    item_format: str = "title",
    split_arguments: dict[str, str] | None = None,
    category_name: str | None = None,
):
    """`trl_rere.load_amazon` after `check_data_dir`; a file that exists but cannot be read stops the run too."""
    from trl_rere.data import CATEGORY_NAMES, load_amazon

    root = check_data_dir(data_dir, category, splits, item_format, split_arguments)
    if category_name is None and category not in CATEGORY_NAMES and get_item_format(item_format).code_pattern is None:
        guess = category.replace("_", " ").lower()
        fail(f"--category {category}: the title prompts do not know what to call its items (known categories: "
             f"{', '.join(CATEGORY_NAMES)}); pass --category_name, e.g. --category_name '{guess} item': the prompt "
             f"reads 'The user has palyed the following {{category_name}}s before: ...'")
    try:
        return load_amazon(root, category, splits=splits, item_format=item_format, category_name=category_name)
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
        if not any((path / f).is_file() for f in TOKENIZER_FILES):
            fail(_no_tokenizer(argument, name, path))
        return
    if _is_local_path(name):
        fail(f"{argument} {name}: no such folder (resolved to {path.resolve()})")
    download = (f"Without hub access, download it on a machine that has it (`hf download {name} --local-dir "
                f"{name.split('/')[-1]}`), copy the folder here and pass {argument} {name.split('/')[-1]}.")
    if not _hub_reachable():
        fail(f"{argument} {name}: not a local folder, and the hub cannot be reached (set HF_HUB_OFFLINE=1 to skip "
             f"the hub on a machine without it). {download}")
    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as error:
        fail(f"{argument} {name}: not a local folder, and the hub gave no model ({str(error).splitlines()[0]}). "
             f"{download}")


# Files of which a saved tokenizer has at least one; tokenizer_config.json alone is not a tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model")


def _no_tokenizer(argument: str, name: str, path: Path) -> str:
    return (f"{argument} {name}: the folder {path.resolve()} holds a model but no tokenizer (none of "
            f"{', '.join(TOKENIZER_FILES)}); transformers would load an empty tokenizer from it and the run would "
            f"train on empty texts. Copy the tokenizer files of the model it was trained from into it "
            f"(`cp <base-model>/tokenizer* <base-model>/vocab.json <base-model>/merges.txt {path}/`), or pass the "
            f"folder a script saved (sft.py and toys.py save the tokenizer next to the model).")


def _hub_reachable(timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the hub opens within `timeout` seconds. Offline mode, or a proxy (which a direct
    connection would not test), answer True and leave the verdict to huggingface_hub; without this, an unreachable
    hub costs about 30 s of retries before its error."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_tokenizer(name: str, argument: str = "--model_name_or_path", **kwargs):
    """`AutoTokenizer.from_pretrained(name)`, stopping the run when what it loads cannot encode text.

    transformers builds a tokenizer from a model's config alone when the folder has no tokenizer files: it encodes
    every text to no tokens, so a run would "train" on nothing and exit 0.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    if not tokenizer("The user has interacted with items", add_special_tokens=False)["input_ids"]:
        fail(_no_tokenizer(argument, name, Path(name).expanduser()))
    return tokenizer


def check_item_vocab(tokenizer, catalog, item_format: str, model_name: str, data_flags: str) -> None:
    """Stops when the item format writes code tokens (semantic IDs) the model's tokenizer lacks, with the command
    that adds them; nothing to check for items written as text."""
    from trl_rere.sid_tokens import SIDTokenError, check_sid_tokens

    if get_item_format(item_format).code_pattern is None:
        return
    try:
        check_sid_tokens(tokenizer, list(catalog.titles))
    except SIDTokenError as error:
        fail(f"--model_name_or_path {model_name} was not trained on these semantic IDs ({str(error).split(':')[0]}). "
             f"Warm-start it on them first; examples/sft.py adds the code tokens and saves the model and tokenizer "
             f"with them: `python examples/sft.py --item_format sid --model_name_or_path {model_name} {data_flags} "
             f"--output_dir runs/sft-sid`, then pass --model_name_or_path runs/sft-sid.")


# -- devices ------------------------------------------------------------------------------------------------------
def default_eval_batch_size() -> int:
    """Prompts per beam search in evaluation when not given: 32 on a GPU (50 beams each, a few GB of KV cache for a
    0.5B model), 4 on a CPU, where a larger batch only adds padding."""
    import torch

    return 32 if torch.cuda.is_available() else 4


# -- arguments ----------------------------------------------------------------------------------------------------
def add_config_argument(parser) -> None:
    """Lists TrlParser's `--config` in `--help` (TrlParser reads it from the command line itself, unlisted)."""
    parser.add_argument("--config", metavar="YAML", default=None,
                        help="YAML file of argument values (e.g. examples/recipes/toys.yaml); arguments given on the "
                             "command line override it.")


def _given(argv: list[str]) -> tuple[set[str], dict]:
    """The argument names given on the command line and the values of the `--config` file, if any."""
    import yaml

    names = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}
    config = {}
    if "--config" in argv and argv.index("--config") + 1 < len(argv):
        with open(argv[argv.index("--config") + 1]) as f:
            config = yaml.safe_load(f) or {}
    return names, config if isinstance(config, dict) else {}


def _is_true(value) -> bool:
    return value is not None and str(value).lower() in ("", "true", "yes", "1")


def parse_args(parser, presets: dict[str, dict] | None = None, argv: list[str] | None = None):
    """`parser.parse_args_and_config()` with presets: a flag (`--smoke`) whose dict of defaults applies when it is set.

    Presets are defaults, not overrides: a `--config` file beats them and the command line beats both, so
    `--smoke --num_generations 8` runs the smoke with G = 8. Returns the dataclasses and the names of the settings
    that came from a preset, for `print_settings`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    names, config = _given(argv)
    preset_keys: set[str] = set()
    for flag, defaults in (presets or {}).items():
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument(f"--{flag}", nargs="?", const="true", default=None)
        value = pre.parse_known_args(argv)[0].__dict__[flag]
        if value is None and flag in config:
            value = str(config[flag])
        if _is_true(value):
            parser.set_defaults(**defaults)
            preset_keys |= {k for k in defaults if k not in names and k not in config}
    try:
        outputs = parser.parse_args_and_config(argv)
    except ValueError as error:  # a config's own check (ReReConfig: whole groups, reward names, ...): one clean line
        fail(str(error))
    outputs = tuple(o for o in outputs if not isinstance(o, argparse.Namespace))  # the --config listed in --help
    return outputs, preset_keys


def print_settings(values: dict, preset_keys: set[str] = frozenset(), preset: str = "--smoke") -> None:
    """One line with the settings a run uses, those that came from a preset marked with `*`."""
    cells = [f"{k}={v}{'*' if k in preset_keys else ''}" for k, v in values.items()]
    note = f" (* = {preset} default; any of them can be given)" if preset_keys & set(values) else ""
    print("settings: " + " ".join(cells) + note, flush=True)


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


def script_parser(dataclass_types, defaults: dict):
    """The scripts' `TrlParser`: `--output_dir` left unset (see `leave_output_dir_unset`), `--config` listed in
    `--help`, and the script's own defaults under the command line and the config file."""
    from trl import TrlParser

    parser = TrlParser(dataclass_types)
    leave_output_dir_unset(parser)
    add_config_argument(parser)
    parser.set_defaults(**defaults)
    return parser


# -- alignment tasks ----------------------------------------------------------------------------------------------
def mix_alignment_tasks(kind: str, next_item, tasks, catalog, data_dir, category: str, item_format: str, seed: int,
                        completion_template: str | None = None):
    """`--align_tasks`: MiniOneRec's alignment tasks mixed with the next-item rows (`kind` "sft" or "rl", see
    `trl_rere.data.mix_sft_tasks` / `mix_rl_tasks`), from the item texts `index/{category}.item.json` under
    `data_dir`; stops with a message naming the option when they cannot be built."""
    from trl_rere.data import get_layout, load_item_texts, mix_rl_tasks, mix_sft_tasks

    if get_layout(item_format).name != "minionerec":  # the item texts are MiniOneRec's index/{category}.item.json
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
