"""Preparation from raw interactions (`trl_rere.data.prepare`, examples/prepare_data.py).

The fixture under tests/fixtures/prepare_amazon2018 is a raw Amazon Reviews 2018 sample and what the authors'
data/process.py (github.com/sober-clever/ReRe) wrote for it; see its make_sample.py.
"""

import ast
import csv
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pl = pytest.importorskip("polars")

from rere_test_utils import DATA_DIR

from trl_rere import load_amazon
from trl_rere.data.prepare import (
    PreparationError,
    PrepareConfig,
    k_core,
    month_start,
    prepare_amazon2018,
    prepare_amazon2023,
    prepare_table,
    read_amazon2018,
    read_json_lines,
    timestamps_to_seconds,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "prepare_amazon2018"
REVIEWS, META = FIXTURE / "Tiny.json", FIXTURE / "meta_Tiny.json"
STEM = "Tiny_5_1996-10-1998-7"
WINDOW = {"start": "1996-10", "end": "1998-07"}
FILES = [f"info/{STEM}.txt"] + [f"{s}/{STEM}.csv" for s in ("train", "valid", "test")]


def expected(name: str, folder: str = "expected") -> bytes:
    return gzip.decompress((FIXTURE / folder / f"{name}.gz").read_bytes())


def assert_same_as_authors(out: Path, folder: str = "expected") -> None:
    for name in FILES:
        assert (out / name).read_bytes() == expected(name, folder), name


def fixture_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- the authors' output ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("block_bytes", [None, 97], ids=["whole-file", "blocks"])
def test_amazon2018_matches_the_authors_script_byte_for_byte(tmp_path, block_bytes):
    # 97-byte blocks: about one review a block, users and items read as categoricals.
    paths = prepare_amazon2018(REVIEWS, META, "Tiny", tmp_path, progress=False, block_bytes=block_bytes, **WINDOW)
    assert sorted(paths) == ["info", "test", "train", "valid"]
    assert_same_as_authors(tmp_path)


def test_small_chunks_write_the_same_bytes(tmp_path):
    prepare_amazon2018(REVIEWS, META, "Tiny", tmp_path, progress=False, chunk_rows=7, **WINDOW)
    assert_same_as_authors(tmp_path)


def test_window_extension_is_an_option_that_matches_the_authors_recursion(tmp_path):
    # From 1997-10 the core has fewer than 3000 items: the authors' rule moves the start back to 1996-10 (and cleans
    # the titles twice on the way, which the fixture's `12&amp;quot;` title shows).
    prepare_amazon2018(
        REVIEWS, META, "Tiny", tmp_path, progress=False, start="1997-10", end="1998-07", extend_window_min_items=3000
    )
    assert_same_as_authors(tmp_path, "expected_extended")
    assert expected(FILES[0], "expected_extended") != expected(FILES[0])


def test_window_extension_is_off_by_default(tmp_path):
    paths = prepare_amazon2018(REVIEWS, META, "Tiny", tmp_path, progress=False, start="1997-10", end="1998-07")
    assert paths["info"].name == "Tiny_5_1997-10-1998-7.txt"
    with open(paths["train"], newline="") as f:
        times = [int(row["timestamp"]) for row in csv.DictReader(f)]
    assert min(times) >= month_start(1997, 10)


def test_load_amazon_reads_the_prepared_layout(tmp_path):
    prepare_amazon2018(REVIEWS, META, "Tiny", tmp_path, progress=False, **WINDOW)
    catalog, splits = load_amazon(tmp_path, "Tiny", category_name="tool")
    titles = [line.split("\t")[0] for line in expected(FILES[0]).decode().splitlines()]
    assert len(catalog) == len(titles)
    for split in ("train", "valid", "test"):
        rows = list(csv.DictReader(expected(f"{split}/{STEM}.csv").decode().splitlines()))
        data = splits[split]
        assert len(data) == len(rows)
        assert data["target_item_id"] == [int(r["item_id"]) for r in rows]
        assert data["history_titles"] == [ast.literal_eval(r["history_item_title"]) for r in rows]
        assert all(1 <= len(h) <= 10 for h in data["history_item_ids"])


@pytest.mark.skipif(not (DATA_DIR / "amazon" / "test").is_dir(), reason="needs ../shared/data/amazon")
def test_columns_have_the_formats_of_the_published_files(tmp_path):
    published = min((DATA_DIR / "amazon" / "test").glob("*.csv"))
    prepare_amazon2018(REVIEWS, META, "Tiny", tmp_path, progress=False, **WINDOW)
    ours = tmp_path / "test" / f"{STEM}.csv"

    def first_row(path):
        with open(path, newline="") as f:
            header = f.readline()
            return header, next(csv.DictReader([header, f.readline()]))

    (header, theirs), (our_header, row) = first_row(published), first_row(ours)
    assert our_header == header and header.endswith("\r\n")
    for column, value in theirs.items():
        try:
            kind = type(ast.literal_eval(value))
        except (ValueError, SyntaxError):
            kind = str
        try:
            our_kind = type(ast.literal_eval(row[column]))
        except (ValueError, SyntaxError):
            our_kind = str
        assert our_kind == kind, column
        if kind is list:
            assert type(ast.literal_eval(row[column])[0]) is type(ast.literal_eval(value)[0]), column


# -- other sources ----------------------------------------------------------------------------------------------------
def test_amazon2023_gives_the_same_layout(tmp_path):
    reviews, meta = tmp_path / "reviews.jsonl", tmp_path / "meta.jsonl"
    reviews.write_text(
        "".join(
            json.dumps(
                {
                    "user_id": r["reviewerID"],
                    "parent_asin": r["asin"],
                    "rating": r["overall"],
                    "timestamp": r["unixReviewTime"] * 1000 + 999,
                    "text": "ignored",
                }
            )
            + "\n"
            for r in fixture_records(REVIEWS)
        )
    )
    meta.write_text(
        "".join(
            json.dumps({"parent_asin": m["asin"], **({"title": m["title"]} if "title" in m else {})}) + "\n"
            for m in fixture_records(META)
        )
    )
    prepare_amazon2023(reviews, meta, "Tiny", tmp_path / "out", progress=False, **WINDOW)
    assert_same_as_authors(tmp_path / "out")


@pytest.mark.parametrize("kind", ["csv", "parquet-ms", "csv-iso"])
def test_table_gives_the_same_layout(tmp_path, kind):
    records = fixture_records(REVIEWS)
    frame = pl.DataFrame(
        {
            "uid": [r["reviewerID"] for r in records],
            "book": [r["asin"] for r in records],
            "stars": [r["overall"] for r in records],
            "when": [r["unixReviewTime"] for r in records],
        }
    )
    items = pl.DataFrame([{"book": m["asin"], "name": m.get("title")} for m in fixture_records(META)])
    if kind == "csv":
        frame.write_csv(tmp_path / "clicks.csv")
    elif kind == "parquet-ms":
        frame = frame.with_columns(pl.col("when") * 1000)
        frame.write_parquet(tmp_path / "clicks.parquet")
    else:
        frame = frame.with_columns(pl.from_epoch("when", "s").dt.strftime("%Y-%m-%dT%H:%M:%S"))
        frame.write_csv(tmp_path / "clicks.csv")
    items.write_parquet(tmp_path / "items.parquet")
    source = tmp_path / ("clicks.parquet" if kind == "parquet-ms" else "clicks.csv")
    options = {
        "user_column": "uid",
        "item_column": "book",
        "time_column": "when",
        "rating_column": "stars",
        "title_column": "name",
    }
    prepare_table(
        source, tmp_path / "items.parquet", "Tiny", tmp_path / "out", progress=False, table_options=options, **WINDOW
    )
    assert_same_as_authors(tmp_path / "out")


def _prepare_amazon2018(reviews: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "examples" / "prepare_data.py"), "amazon2018", "--reviews", str(reviews),
               "--meta", str(META), "--category", "Tiny", "--out", str(out), *extra]
    return subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_command_line_writes_the_authors_files(tmp_path):
    result = _prepare_amazon2018(REVIEWS, tmp_path, "--start", "1996-10", "--end", "1998-07", "--no_progress")
    assert result.returncode == 0, result.stderr
    assert_same_as_authors(tmp_path)


def test_command_line_reports_a_bad_line_as_a_usage_error(tmp_path):
    bad = tmp_path / "reviews.json"
    bad.write_text(REVIEWS.read_text().replace("\n", "\n{oops\n", 1))
    result = _prepare_amazon2018(bad, tmp_path / "out")
    assert result.returncode == 2
    assert f"error: {bad}:2: malformed JSON" in result.stderr


# -- bad input --------------------------------------------------------------------------------------------------------
def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_malformed_json_line_names_file_and_line(tmp_path):
    lines = REVIEWS.read_text().splitlines()
    lines.insert(4, '{"reviewerID": "A1", "asin": ')
    path = write_lines(tmp_path / "reviews.json", lines)
    with pytest.raises(PreparationError, match=rf"^{path}:5: malformed JSON .*fix or delete that line"):
        read_amazon2018(path, META)


def test_missing_field_names_file_line_and_field(tmp_path):
    lines = REVIEWS.read_text().splitlines()
    lines.insert(2, "")  # blank lines are skipped but still counted
    record = json.loads(lines[6])
    del record["unixReviewTime"]
    lines[6] = json.dumps(record)
    path = write_lines(tmp_path / "reviews.json", lines)
    with pytest.raises(PreparationError, match=rf"^{path}:7: no 'unixReviewTime' field .*add it or delete the line"):
        read_amazon2018(path, META)


def test_wrongly_typed_value_names_file_line_and_field(tmp_path):
    lines = REVIEWS.read_text().splitlines()
    record = json.loads(lines[3])
    record["unixReviewTime"] = "yesterday"
    lines[3] = json.dumps(record)
    path = write_lines(tmp_path / "reviews.json", lines)
    with pytest.raises(PreparationError, match=rf"^{path}:4: field 'unixReviewTime' is 'yesterday', expected integer"):
        read_amazon2018(path, META)


def test_metadata_without_asin_names_its_line(tmp_path):
    path = write_lines(tmp_path / "meta.json", META.read_text().splitlines() + ['{"title": "Orphan Title"}'])
    count = len(META.read_text().splitlines())
    with pytest.raises(PreparationError, match=rf"^{path}:{count + 1}: no 'asin' field"):
        read_amazon2018(REVIEWS, path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(PreparationError, match="nope.json: no such file"):
        read_amazon2018(tmp_path / "nope.json", META)


def test_empty_result_after_filtering_says_what_to_change(tmp_path):
    with pytest.raises(PreparationError, match="no interaction is left .*widen --start/--end or lower --k"):
        prepare_amazon2018(REVIEWS, META, "Tiny", tmp_path, progress=False, start="2005-01", end="2006-01")
    with pytest.raises(PreparationError, match="no interaction is left"):
        prepare_amazon2018(REVIEWS, META, "Tiny", tmp_path, progress=False, k=500, **WINDOW)
    assert not (tmp_path / "info").exists()


def test_table_missing_column_names_the_option(tmp_path):
    pl.DataFrame({"user_id": ["u"], "item_id": ["i"], "time": [1]}).write_csv(tmp_path / "clicks.csv")
    pl.DataFrame({"item_id": ["i"], "title": ["Saw"]}).write_csv(tmp_path / "items.csv")
    with pytest.raises(PreparationError, match=r"clicks.csv:1: .*no column 'timestamp' \(set it with --time_column\)"):
        prepare_table(tmp_path / "clicks.csv", tmp_path / "items.csv", "X", tmp_path / "out", progress=False)


def test_unknown_timestamp_unit_is_refused(tmp_path):
    with pytest.raises(PreparationError, match=r"t.csv: unknown timestamp unit 'days'; use one of auto, s, ms"):
        timestamps_to_seconds(pl.Series([1_500_000_000]), "days", "t.csv")
    # Seconds and milliseconds mixed: no single unit fits, so auto refuses rather than guesses.
    with pytest.raises(PreparationError, match=r"cannot tell the timestamp unit .*give it with --time_unit"):
        timestamps_to_seconds(pl.Series([1_500_000_000, 1_500_000_000_000]), "auto", "t.csv")
    with pytest.raises(PreparationError, match=r"t.csv: row 2: timestamp 'soon' is neither"):
        timestamps_to_seconds(pl.Series(["2018-01-01", "soon"]), "auto", "t.csv")


@pytest.mark.parametrize("unit, scale", [("s", 1), ("ms", 1_000), ("us", 1_000_000), ("ns", 1_000_000_000)])
def test_auto_unit_detection(unit, scale):
    seconds = [946_684_800, 1_541_030_400]
    assert timestamps_to_seconds(pl.Series([s * scale for s in seconds]), "auto", "t").to_list() == seconds
    assert timestamps_to_seconds(pl.Series([s * scale for s in seconds]), unit, "t").to_list() == seconds


def test_config_rejects_bad_windows():
    with pytest.raises(ValueError, match="start must be a month as YYYY-MM"):
        PrepareConfig(start="1996/10")
    with pytest.raises(ValueError, match="is after end"):
        PrepareConfig(start="2019-01", end="2018-11")


# -- the k-core -------------------------------------------------------------------------------------------------------
def naive_k_core(users, items, k):
    alive = set(range(len(users)))
    while True:
        cu, ci = {}, {}
        for e in alive:
            cu[users[e]] = cu.get(users[e], 0) + 1
            ci[items[e]] = ci.get(items[e], 0) + 1
        drop = {e for e in alive if cu[users[e]] < k or ci[items[e]] < k}
        if not drop:
            return alive
        alive -= drop


@pytest.mark.parametrize("seed", range(5))
def test_k_core_equals_peeling_one_edge_set_at_a_time(seed):
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, 40, 600), rng.zipf(1.5, 600) % 50
    mask = k_core(users, items, 4)
    assert set(np.flatnonzero(mask).tolist()) == naive_k_core(users.tolist(), items.tolist(), 4)
    if mask.any():
        assert np.bincount(users[mask])[users[mask]].min() >= 4
        assert np.bincount(items[mask])[items[mask]].min() >= 4


def test_descriptions_go_to_a_text_file_keyed_by_item_id(tmp_path):
    paths = prepare_amazon2018(REVIEWS, META, "Tiny", tmp_path, progress=False, description=True, **WINDOW)
    records = [json.loads(line) for line in paths["text"].read_text().splitlines()]
    titles = [line.split("\t")[0] for line in expected(FILES[0]).decode().splitlines()]
    assert [r["item_id"] for r in records] == list(range(len(titles)))
    assert [r["title"] for r in records] == titles
    later = next(r for r in records if r["asin"] == "B000000014")
    assert later["title"] == "Later Record Wins" and later["text"] == "extra fields are ignored"
    assert_same_as_authors(tmp_path)  # the split files do not change


def test_without_bounds_the_window_is_the_datas_whole_range(tmp_path):
    interactions, _ = read_amazon2018(REVIEWS, META)
    paths = prepare_amazon2018(REVIEWS, META, "Tiny", tmp_path, progress=False, start=None, end=None)
    times = interactions["timestamp"]
    first, last = time.gmtime(times.min()), time.gmtime(times.max())
    end = (last.tm_year, last.tm_mon + 1) if last.tm_mon < 12 else (last.tm_year + 1, 1)
    assert paths["info"].name == f"Tiny_5_{first.tm_year}-{first.tm_mon}-{end[0]}-{end[1]}.txt"
    with open(paths["train"], newline="") as f:
        earliest = min(int(row["timestamp"]) for row in csv.DictReader(f))
    assert earliest < month_start(1996, 10)  # before the authors' default start


def test_reading_in_small_blocks_gives_the_same_frame():
    fields = {"reviewerID": "string", "asin": "string", "overall": "number", "unixReviewTime": "integer"}
    whole = read_json_lines(REVIEWS, fields, list(fields), "reviews", ["reviewerID"])
    blocks = read_json_lines(REVIEWS, fields, list(fields), "reviews", ["reviewerID"], block_bytes=97)
    assert blocks.height == len(REVIEWS.read_text().splitlines())
    assert blocks.with_columns(pl.col("reviewerID").cast(pl.String)).equals(
        whole.with_columns(pl.col("reviewerID").cast(pl.String))
    )


def test_command_line_table_with_named_columns(tmp_path):
    records = fixture_records(REVIEWS)
    pl.DataFrame(
        {
            "uid": [r["reviewerID"] for r in records],
            "book": [r["asin"] for r in records],
            "stars": [r["overall"] for r in records],
            "ms": [r["unixReviewTime"] * 1000 for r in records],
        }
    ).write_parquet(tmp_path / "clicks.parquet")
    items = [{"asin": m["asin"], "name": m.get("title")} for m in fixture_records(META)]
    pl.DataFrame(items).write_csv(tmp_path / "items.csv")
    command = [
        sys.executable, str(ROOT / "examples" / "prepare_data.py"), "table",
        "--interactions", str(tmp_path / "clicks.parquet"), "--items", str(tmp_path / "items.csv"),
        "--user_column", "uid", "--item_column", "book", "--time_column", "ms", "--time_unit", "ms",
        "--rating_column", "stars", "--items_item_column", "asin", "--title_column", "name",
        "--category", "Tiny", "--out", str(tmp_path / "out"), "--start", "1996-10", "--end", "1998-07", "--no_progress",
    ]  # fmt: skip
    result = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert_same_as_authors(tmp_path / "out")
    command[command.index("--time_column") + 1] = "when"
    result = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert "clicks.parquet:1: the interactions table has no column 'when' (set it with --time_column)" in result.stderr
