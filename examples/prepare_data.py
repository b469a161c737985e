# Copyright 2026 The trl-rere authors. Licensed under the Apache License, Version 2.0.
"""Raw interactions to the D3/ReRe layout that `load_amazon`, sft.py, toys.py and evaluate.py read.

    python examples/prepare_data.py amazon2018 --reviews Industrial_and_Scientific.json \
        --meta meta_Industrial_and_Scientific.json --category Industrial_and_Scientific --out data/amazon
    python examples/prepare_data.py amazon2023 --reviews Toys_and_Games.jsonl --meta meta_Toys_and_Games.jsonl \
        --category Toys_and_Games --out data/amazon --start 2021-10 --end 2023-10
    python examples/prepare_data.py table --interactions clicks.parquet --items items.csv --category Books \
        --out data/mine --user_column uid --item_column book --time_column ts --title_column name

Each writes `OUT/info/{category}_{k}_{start}-{end}.txt` and `OUT/{train,valid,test}/{category}_{k}_{start}-{end}.csv`.
For Amazon Reviews 2018 the rows, item ids and titles are those of the authors' data/process.py
(github.com/sober-clever/ReRe) for the same window. A bad input stops with `error: FILE:LINE: ...`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from trl_rere.data.prepare import (
    TIME_UNITS,
    PreparationError,
    PrepareConfig,
    prepare_amazon2018,
    prepare_amazon2023,
    prepare_table,
)


def add_common_arguments(parser: argparse.ArgumentParser, start: str | None, end: str | None) -> None:
    """The output and window options every source shares (help texts from `PrepareConfig`); the window's defaults
    are the source's (Amazon 2018: the authors' 1996-10..2018-11; others: the data's whole range)."""
    helps = {f.name: f.metadata["help"] for f in PrepareConfig.__dataclass_fields__.values()}
    parser.add_argument("--category", required=True, help="Category key: the file names' prefix (e.g. Toys_and_Games).")
    parser.add_argument("--out", required=True, help="Output folder: info/, train/, valid/ and test/ go there.")
    parser.add_argument("--start", default=start, help=helps["start"] + f" Default: {start or 'the data'}.")
    parser.add_argument("--end", default=end, help=helps["end"] + f" Default: {end or 'the data'}.")
    parser.add_argument("--k", type=int, default=5, help=helps["k"])
    parser.add_argument("--max_history", type=int, default=10, help=helps["max_history"])
    parser.add_argument("--seed", type=int, default=42, help=helps["seed"])
    parser.add_argument("--extend_window_min_items", type=int, default=None, help=helps["extend_window_min_items"])
    parser.add_argument("--no_progress", action="store_true", help="No progress bars.")


def config_of(args: argparse.Namespace) -> PrepareConfig:
    return PrepareConfig(
        k=args.k,
        start=args.start,
        end=args.end,
        max_history=args.max_history,
        seed=args.seed,
        extend_window_min_items=args.extend_window_min_items,
    )


def block_bytes(args: argparse.Namespace) -> int | None:
    return None if args.read_block_mb is None else args.read_block_mb << 20


def run_amazon(args: argparse.Namespace) -> dict:
    prepare = prepare_amazon2018 if args.command == "amazon2018" else prepare_amazon2023
    return prepare(args.reviews, args.meta, args.category, args.out, config_of(args), description=args.description,
                   progress=not args.no_progress, block_bytes=block_bytes(args))


def run_sids(args: argparse.Namespace) -> dict:
    from trl_rere.data.build_sids import make_sid_dataset

    sizes = [int(s) for s in str(args.codebook_size).split(",")]
    try:
        stats = make_sid_dataset(args.data_dir, args.category, args.out, method=args.method, encoder=args.encoder,
                                 levels=args.levels, codebook_size=sizes[0] if len(sizes) == 1 else sizes,
                                 seed=args.seed, metadata=args.metadata, dim=args.dim)
    except (FileNotFoundError, ImportError) as error:  # a missing file, or the extra not installed
        raise ValueError(str(error)) from None
    print(stats.to_text())
    print(json.dumps(dataclasses.asdict(stats)))
    return {"sids": Path(args.out)}


def run_table(args: argparse.Namespace) -> dict:
    options = {
        name: getattr(args, name)
        for name in (
            "user_column",
            "item_column",
            "time_column",
            "rating_column",
            "title_column",
            "text_column",
            "items_item_column",
            "time_unit",
        )
    }
    return prepare_table(
        args.interactions, args.items, args.category, args.out, config_of(args), not args.no_progress, options
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    for name, run, fields, window in (
        (
            "amazon2018",
            run_amazon,
            "reviewerID, asin, overall, unixReviewTime; metadata asin, title",
            ("1996-10", "2018-11"),
        ),
        (
            "amazon2023",
            run_amazon,
            "user_id, parent_asin, rating, timestamp (ms); metadata parent_asin, title",
            (None, None),
        ),
    ):
        sub = commands.add_parser(name, help=f"Amazon Reviews {name[-4:]} JSON lines ({fields}).")
        sub.add_argument("--reviews", required=True, help=f"Reviews JSON-lines file (.gz too): {fields.split(';')[0]}.")
        sub.add_argument("--meta", required=True, help="Metadata JSON-lines file (.gz too).")
        sub.add_argument("--description", action="store_true", help="Also write text/{stem}.jsonl with descriptions.")
        sub.add_argument(
            "--read_block_mb",
            type=int,
            default=None,
            help="Parse the JSON lines this many MiB at a time, users and items kept as categoricals (bounded memory, "
            "slower); 0: whole files. Default: whole files up to 1 GiB, 64 MiB blocks above.",
        )
        add_common_arguments(sub, *window)
        sub.set_defaults(run=run)

    sub = commands.add_parser("table", help="Your own interactions and items (CSV, TSV or Parquet).")
    sub.add_argument("--interactions", required=True, help="Interactions table: user, item, time (, rating).")
    sub.add_argument("--items", required=True, help="Items table: item, title (, text).")
    sub.add_argument("--user_column", default="user_id", help="Interactions' user column.")
    sub.add_argument("--item_column", default="item_id", help="Interactions' item column.")
    sub.add_argument("--time_column", default="timestamp", help="Interactions' time column.")
    sub.add_argument("--rating_column", default=None, help="Interactions' rating column (default: all 5.0).")
    sub.add_argument("--items_item_column", default=None, help="Items' item column (default: --item_column).")
    sub.add_argument("--title_column", default="title", help="Items' title column.")
    sub.add_argument("--text_column", default=None, help="Items' text column: also write text/{stem}.jsonl.")
    sub.add_argument(
        "--time_unit",
        default="auto",
        choices=["auto", *TIME_UNITS],
        help="Unit of numeric times (auto: told by magnitude). Dates and datetimes need none.",
    )
    add_common_arguments(sub, None, None)
    sub.set_defaults(run=run_table)

    from trl_rere.data.build_sids import DEFAULT_ENCODER, METHODS

    sub = commands.add_parser("sids", help="Semantic IDs from item text: a title layout to MiniOneRec's layout.")
    sub.add_argument("--data_dir", required=True, help="Folder with info/ and the split folders (title layout).")
    sub.add_argument("--category", required=True, help="File-name key, e.g. Industrial_and_Scientific.")
    sub.add_argument("--out", required=True, help="Output folder (MiniOneRec's layout: index/, info/, the splits).")
    sub.add_argument("--method", choices=METHODS, default="rqkmeans", help="Residual quantiser.")
    sub.add_argument("--encoder", default=DEFAULT_ENCODER,
                     help="A sentence-transformers model (hub name or folder), 'tfidf' (offline), or a .npy array with "
                     "one row per item in item-id order.")
    sub.add_argument("--metadata", default=None,
                     help="Item texts: {item id: {title, description, ...}} JSON (MiniOneRec's index/*.item.json) or "
                     "JSON lines with item_id (prepare_data.py's text/*.jsonl); default: the titles alone.")
    sub.add_argument("--levels", type=int, default=3, help="Code levels (tokens per SID).")
    sub.add_argument("--codebook_size", default="256",
                     help="Codes per level: one number, or one per level (64,256,256).")
    sub.add_argument("--dim", type=int, default=256, help="TF-IDF: SVD components.")
    sub.add_argument("--seed", type=int, default=0, help="Seed of every random choice: same seed, same SIDs.")
    sub.set_defaults(run=run_sids)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    try:
        paths = args.run(args)
    except (PreparationError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return paths


if __name__ == "__main__":
    main()
