"""Reading raw interaction files for `trl_rere.data.prepare`: Amazon Reviews 2018/2023 JSON lines and a user's own
CSV/TSV/Parquet tables, into the frames `prepare_interactions` takes; times in Unix seconds. Bad input stops with a
`PreparationError` naming the file, the line and what to change."""

from __future__ import annotations

import calendar
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from .errors import DataError

TIME_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
# JSON-lines files larger than this are parsed in blocks of BLOCK_BYTES (see read_json_lines).
WHOLE_FILE_BYTES = 1 << 30
BLOCK_BYTES = 64 << 20
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")


class PreparationError(DataError):
    """A raw input that cannot be prepared: the message names the file, the line and what to change."""


def require_polars():
    """Imports polars, the engine of the preparation code, with an error that says how to install it."""
    try:
        import polars as pl
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Preparing raw interactions needs polars: pip install 'trl-rere[data]' (or pip install polars)"
        ) from e
    return pl


def _parse_month(value: str, name: str) -> tuple[int, int]:
    match = _MONTH.match(str(value))
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"{name} must be a month as YYYY-MM (e.g. 1996-10), got {value!r}")
    return int(match.group(1)), int(match.group(2))


def month_start(year: int, month: int) -> int:
    """Unix seconds of the first second of a month, UTC (the authors' script uses the local time of the machine it
    runs on: the same on a UTC machine).

    Examples:
    ```python
    >>> month_start(2018, 11)
    1541030400
    ```
    """
    return calendar.timegm((year, month, 1, 0, 0, 0))


# -- reading raw files ------------------------------------------------------------------------------------------------
def _record_line(path: str, record: int) -> int:
    """The 1-based line of the `record`-th (0-based) non-blank line: readers skip blank lines."""
    seen = -1
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                seen += 1
                if seen == record:
                    return number
    return record + 1


def _open_text(path: str):
    if str(path).endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _first_bad_json_line(path: str, fields: dict) -> tuple[int, str]:
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                return number, f"malformed JSON ({e.msg} at column {e.colno})"
            if not isinstance(record, dict):
                return number, f"a JSON {type(record).__name__}, not an object"
            for name, kind in fields.items():
                value = record.get(name)
                if value is not None and not _json_kind_ok(value, kind):
                    return number, f"field {name!r} is {value!r}, expected {kind}"
    return 0, "unreadable"


def _json_kind_ok(value, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "strings":
        return isinstance(value, (str, list))
    return True


def _json_blocks(path: str, block_bytes: int):
    """Whole lines of a JSON-lines file (`.gz` too), about `block_bytes` at a time."""
    import gzip

    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        tail = b""
        while block := f.read(block_bytes):
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                tail += block
                continue
            yield tail + block[:cut]
            tail = block[cut:]
        if tail.strip():
            yield tail


def _read_json_blocks(path: str, schema: dict, categorical: Sequence[str], block_bytes: int | None):
    import io

    pl = require_polars()
    if block_bytes is None:
        block_bytes = BLOCK_BYTES if os.path.getsize(path) > WHOLE_FILE_BYTES else 0
    if block_bytes == 0:  # polars' own reader: fastest, but holds the file and every string
        return pl.scan_ndjson(path, schema=schema).collect()
    frames = [
        pl.read_ndjson(io.BytesIO(block), schema=schema).with_columns(
            pl.col(c).cast(pl.Categorical) for c in categorical
        )
        for block in _json_blocks(path, block_bytes)
        if block.strip()
    ]
    return pl.concat(frames, rechunk=True) if frames else pl.DataFrame(schema=schema)


def read_json_lines(
    path: str | os.PathLike,
    fields: dict[str, str],
    required: Sequence[str],
    what: str,
    categorical: Sequence[str] = (),
    block_bytes: int | None = None,
):
    """Reads the named fields of a JSON-lines file (one object a line; `.gz` too) into a polars DataFrame in file
    order, other fields unread. `fields` maps a name to `"string"`, `"integer"`, `"number"` or `"strings"` (a string
    or a list of strings, joined by spaces). A malformed line, a wrongly typed value or a required field that is
    missing or null stops with a `PreparationError` naming the file and line.

    `block_bytes=0` reads the whole file with polars' reader (fastest; memory grows with the file). Otherwise the
    file is parsed `block_bytes` at a time and the `categorical` string fields are kept as polars categoricals (4 bytes
    a row plus one copy of each distinct string), so that memory follows the distinct users and items rather than the
    file's size, at about twice the reading time. `None`: whole files up to `WHOLE_FILE_BYTES`, blocks of
    `BLOCK_BYTES` above.
    """
    pl = require_polars()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PreparationError(f"{path}: no such file (the {what} file)")
    dtypes = {"string": pl.String, "integer": pl.Int64, "number": pl.Float64, "strings": pl.String}
    schema = {name: dtypes[kind] for name, kind in fields.items() if kind != "strings"}
    lists = [name for name, kind in fields.items() if kind == "strings"]
    try:
        frame = _read_json_blocks(path, schema | {name: pl.List(pl.String) for name in lists}, categorical, block_bytes)
    except Exception as e:  # polars names neither line nor field: find them
        if lists:  # a plain string where a list was expected: read those fields as strings
            try:
                frame = _read_json_blocks(path, schema | {name: pl.String for name in lists}, categorical, block_bytes)
            except Exception:  # noqa: BLE001 - any failure: find the line below
                frame = None
            if frame is not None:
                return _check_required(frame, path, required, what)
        line, problem = _first_bad_json_line(path, fields)
        raise PreparationError(
            f"{path}:{line}: {problem} in the {what} file; fix or delete that line ({type(e).__name__}: {e})"
        ) from e
    if lists:
        frame = frame.with_columns(pl.col(name).list.join(" ") for name in lists)
    return _check_required(frame, path, required, what)


def _check_required(frame, path: str, required: Sequence[str], what: str):
    pl = require_polars()
    for name in required:
        missing = frame.select(pl.col(name).is_null().arg_max().alias("at"), pl.col(name).is_null().any()).row(0)
        if missing[1]:
            line = _record_line(path, missing[0])
            raise PreparationError(
                f"{path}:{line}: no {name!r} field (missing or null) in the {what} file; every line needs "
                f"{', '.join(repr(r) for r in required)}: add it or delete the line"
            )
        if frame.schema[name] == pl.String:
            is_empty = pl.col(name) == ""
            empty = frame.select(is_empty.arg_max().alias("at"), is_empty.any().alias("any")).row(0)
            if empty[1]:
                raise PreparationError(
                    f"{path}:{_record_line(path, empty[0])}: empty {name!r} in the {what} file: give it a value"
                )
    return frame


def _read_amazon(reviews, meta, description, block_bytes, user: str, item: str, rating: str, time: str, ms: bool):
    pl = require_polars()
    fields = {user: "string", item: "string", rating: "number", time: "integer"}
    interactions = read_json_lines(reviews, fields, list(fields), "reviews", [user, item], block_bytes).select(
        pl.col(user).alias("user"),
        pl.col(item).alias("item"),
        pl.col(rating).alias("rating"),
        (pl.col(time) // 1000 if ms else pl.col(time)).alias("timestamp"),
    )
    meta_fields = {item: "string", "title": "string"} | ({"description": "strings"} if description else {})
    items = read_json_lines(meta, meta_fields, [item], "metadata", block_bytes=block_bytes).rename({item: "item"})
    if description:
        items = items.rename({"description": "text"})
    return interactions, items


def read_amazon2018(
    reviews: str | os.PathLike, meta: str | os.PathLike, description: bool = False, block_bytes: int | None = None
):
    """Reads Amazon Reviews 2018 JSON-lines files: reviews (`reviewerID, asin, overall, unixReviewTime`) and metadata
    (`asin, title`, and `description` if asked). Returns `(interactions, items)`, the frames `prepare_interactions`
    takes: `user, item, rating, timestamp` (seconds) and `item, title[, text]`, in file order."""
    return _read_amazon(reviews, meta, description, block_bytes, "reviewerID", "asin", "overall", "unixReviewTime",
                        ms=False)


def read_amazon2023(
    reviews: str | os.PathLike, meta: str | os.PathLike, description: bool = False, block_bytes: int | None = None
):
    """Reads Amazon Reviews 2023 JSONL files: reviews (`user_id, parent_asin, rating, timestamp` in milliseconds) and
    metadata (`parent_asin, title`, and `description` if asked). Items are parent ASINs; timestamps become seconds
    (floored), so windows and the written `timestamp` columns are in seconds as in the 2018 layout."""
    return _read_amazon(reviews, meta, description, block_bytes, "user_id", "parent_asin", "rating", "timestamp",
                        ms=True)


def _read_table_file(path: str, columns: Sequence[str], what: str, option_of: dict[str, str]):
    pl = require_polars()
    if not os.path.isfile(path):
        raise PreparationError(f"{path}: no such file (the {what} table)")
    suffix = "".join(Path(path).suffixes[-2:]).lower()
    try:
        if suffix.endswith((".parquet", ".pq")):
            schema = pl.read_parquet_schema(path)
            lazy = pl.scan_parquet(path)
        elif ".csv" in suffix or ".tsv" in suffix:
            lazy = pl.scan_csv(path, separator="\t" if ".tsv" in suffix else ",", infer_schema_length=10_000)
            schema = lazy.collect_schema()
        else:
            raise PreparationError(f"{path}: the {what} table must be .csv, .tsv or .parquet, got {suffix or 'none'}")
    except PreparationError:
        raise
    except Exception as e:
        raise PreparationError(f"{path}: cannot read the {what} table ({type(e).__name__}: {e})") from e
    missing = [c for c in columns if c not in schema]
    if missing:
        hint = "; ".join(f"column {c!r} (set it with --{option_of.get(c, c)})" for c in missing)
        raise PreparationError(f"{path}:1: the {what} table has no {hint}; its columns are {list(schema)}")
    try:
        return lazy.select(columns).collect()
    except Exception as e:
        raise PreparationError(f"{path}: cannot read the {what} table ({type(e).__name__}: {e})") from e


def timestamps_to_seconds(values, unit: str, where: str):
    """Integer Unix seconds from a polars Series of datetimes, dates, numbers in `unit` (`s`, `ms`, `us`, `ns`, or
    `auto`: told apart by magnitude, which needs all values in one plausible range) or ISO date strings.

    Examples:
    ```python
    >>> import polars as pl
    >>> timestamps_to_seconds(pl.Series([1541030400000, 1541030401000]), "auto", "t.csv").to_list()
    [1541030400, 1541030401]
    ```
    """
    pl = require_polars()
    if unit not in ("auto", *TIME_UNITS):
        raise PreparationError(f"{where}: unknown timestamp unit {unit!r}; use one of auto, {', '.join(TIME_UNITS)}")
    dtype = values.dtype
    if dtype == pl.String:
        parsed = values.str.to_datetime(strict=False, time_unit="us")
        bad = parsed.is_null() & values.is_not_null()
        if bad.any():
            row = int(bad.arg_max())
            raise PreparationError(
                f"{where}: row {row + 1}: timestamp {values[row]!r} is neither a number nor an ISO date; give Unix "
                f"times (and --time_unit) or dates like 2018-11-01T00:00:00"
            )
        values, dtype = parsed, parsed.dtype
    if dtype == pl.Date:
        values, dtype = values.cast(pl.Datetime("us")), pl.Datetime("us")
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            values = values.dt.convert_time_zone("UTC")
        return values.dt.epoch("s")
    if not dtype.is_numeric():
        raise PreparationError(f"{where}: timestamps of type {dtype} are not times; give numbers or dates")
    if unit == "auto":
        low, high = values.min(), values.max()
        # Unix times of 1973-2286 in one unit: seconds up to 1e10, ms up to 1e13, ...
        units = [u for u, scale in TIME_UNITS.items() if 1e8 * scale <= low and high < 1e10 * scale]
        if len(units) != 1:
            raise PreparationError(
                f"{where}: cannot tell the timestamp unit from values {low}..{high} (not Unix times of 1973-2286 "
                f"in one of s, ms, us, ns); give it with --time_unit"
            )
        unit = units[0]
    return (values // TIME_UNITS[unit]).cast(pl.Int64) if TIME_UNITS[unit] > 1 else values.cast(pl.Int64)


def read_table(
    interactions: str | os.PathLike,
    items: str | os.PathLike,
    *,
    user_column: str = "user_id",
    item_column: str = "item_id",
    time_column: str = "timestamp",
    rating_column: str | None = None,
    title_column: str = "title",
    text_column: str | None = None,
    items_item_column: str | None = None,
    time_unit: str = "auto",
):
    """Reads a user's own interactions (CSV, TSV or Parquet with user, item, timestamp and optional rating columns)
    and item table (item and title, optional text) into the frames `prepare_interactions` takes. Without a rating
    column every rating is 5.0; times become Unix seconds (`timestamps_to_seconds`)."""
    pl = require_polars()
    interactions, items = os.fspath(interactions), os.fspath(items)
    options = {user_column: "user_column", item_column: "item_column", time_column: "time_column"}
    columns = [user_column, item_column, time_column] + ([rating_column] if rating_column else [])
    if rating_column:
        options[rating_column] = "rating_column"
    frame = _read_table_file(interactions, columns, "interactions", options)
    times = timestamps_to_seconds(frame[time_column], time_unit, interactions)
    out = pl.DataFrame(
        {
            "user": frame[user_column].cast(pl.String),
            "item": frame[item_column].cast(pl.String),
            "rating": frame[rating_column] if rating_column else pl.Series([5.0] * frame.height),
            "timestamp": times,
        }
    )
    for name in ("user", "item", "timestamp"):
        nulls = out[name].is_null()
        if nulls.any():
            raise PreparationError(
                f"{interactions}: row {int(nulls.arg_max()) + 1}: empty {name} (column "
                f"{ {'user': user_column, 'item': item_column, 'timestamp': time_column}[name]!r}); fill or drop it"
            )
    items_item_column = items_item_column or item_column
    item_columns = [items_item_column, title_column] + ([text_column] if text_column else [])
    item_options = {items_item_column: "items_item_column", title_column: "title_column"}
    if text_column:
        item_options[text_column] = "text_column"
    table = _read_table_file(items, item_columns, "items", item_options)
    renamed = {items_item_column: "item", title_column: "title"} | ({text_column: "text"} if text_column else {})
    table = table.rename(renamed).with_columns(pl.col("item").cast(pl.String), pl.col("title").cast(pl.String))
    return out, table
