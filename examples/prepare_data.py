# Copyright 2026 The trl-rere authors. Licensed under the Apache License, Version 2.0.
"""Prepares data for trl-rere.

    python examples/prepare_data.py sids --data_dir DIR --category NAME --out SID_DIR \
        [--method rqkmeans|rqkmeans-balanced|rqvae] [--encoder MODEL|tfidf|PATH.npy] [--levels 3 --codebook_size 256] \
        [--metadata ITEMS.json|ITEMS.jsonl] [--seed 0]

`sids` turns a title layout (D3/ReRe: info/NAME_5_*.txt `title<TAB>item_id`, {train,valid,test}/NAME_5_*.csv) into
MiniOneRec's semantic-ID layout under SID_DIR (index/NAME.index.json, index/NAME.item.json, info/ with the sid column,
the split CSVs with history_item_sid / item_sid), read by `load_amazon(SID_DIR, NAME, item_format="sid")` and
`examples/toys.py --item_format sid --data_dir SID_DIR`. Item texts are the titles, or with --metadata the title,
description, brand and categories of MiniOneRec's `index/NAME.item.json` shape (or JSON lines with item_id).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict


def sids(argv=None, prog="prepare_data.py sids") -> int:
    """The `sids` subcommand: title layout + item texts -> semantic IDs in MiniOneRec's layout."""
    from trl_rere.sids import DEFAULT_ENCODER, METHODS

    p = argparse.ArgumentParser(prog=prog, description="Semantic IDs from item text, in MiniOneRec's layout.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_dir", required=True, help="folder with info/ and the split folders (title layout)")
    p.add_argument("--category", required=True, help="file-name key, e.g. Industrial_and_Scientific")
    p.add_argument("--out", required=True, help="output folder (MiniOneRec's layout)")
    p.add_argument("--method", choices=METHODS, default="rqkmeans")
    p.add_argument("--encoder", default=DEFAULT_ENCODER,
                   help="a sentence-transformers model (name or folder), 'tfidf' (offline), or a .npy array with one "
                   "row per item in item-id order")
    p.add_argument("--metadata", default=None, help="item texts: {item id: {title, description, ...}} JSON or JSONL")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--codebook_size", default="256",
                   help="codes per level: one number, or one per level separated by commas (e.g. 64,256,256)")
    p.add_argument("--dim", type=int, default=256, help="TF-IDF: SVD components")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    from trl_rere.sids import make_sid_dataset

    try:
        sizes = [int(k) for k in a.codebook_size.split(",")]
    except ValueError:
        p.error(f"--codebook_size must be a number or comma-separated numbers, got {a.codebook_size!r}")
    codebook_size = sizes[0] if len(sizes) == 1 else sizes

    try:
        stats = make_sid_dataset(a.data_dir, a.category, a.out, method=a.method, encoder=a.encoder, levels=a.levels,
                                 codebook_size=codebook_size, seed=a.seed, metadata=a.metadata, dim=a.dim)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    print(stats.to_text())
    print(json.dumps(asdict(stats)))
    print(f"wrote {a.out}: load it with load_amazon({a.out!r}, {a.category!r}, item_format='sid')")
    return 0


COMMANDS = {"sids": sids}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        print(f"error: the first argument must be a command: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:], prog=f"prepare_data.py {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
