"""Look-alike data from a profile, for dev environments: dev runs on fake data with the real
schema. ``generate`` writes a file in the source's format with the same columns, in order, of
the same types, whose values stay inside what the profile allows (numbers and datetimes within
[min, max], strings only from the category set, the shares of nulls and of ``true`` roughly
kept) and which holds **no row of the real data**.

The profile it starts from holds no rows, only per-column ranges, category sets and shares
(see ``apps.training.profile``); a generated row can still equal a real one by chance (a few
categories, small ranges), so when the real file is given every generated row is checked
against a hash set of the real rows and regenerated until none is one. The set holds 8 bytes
per real row (a 64-bit BLAKE2b of the row's canonical text): a hash collision only makes a
row be regenerated needlessly, never lets a real row through. Generation is deterministic for
a seed (and the same profile and real file).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .datafiles import FileDescription, infer_type, read_batches, sha256_file
from .profile import PROFILE_VERSION, is_text, schema_from_text, supported

MAX_ROUNDS = 20
MAX_CANDIDATES = 1_000_000
FREE_TEXT_ALPHABET = "abcdefghijklmnopqrstuvwxyz" * 3 + "0123456789" + "  "
# Values a CSV reader would not read back as text (nulls, booleans): never made as free text.
RESERVED_WORDS = {"", "na", "n/a", "null", "nan", "none", "true", "false"}
_SEPARATOR, _NULL = "\x1f", "\x00"


class FakeDataError(ValueError):
    pass


def generate(
    profile: dict[str, Any],
    rows: int,
    seed: int,
    *,
    out: os.PathLike | str,
    real: os.PathLike | str | None,
) -> Path:
    """Write ``rows`` rows of fake data looking like the profiled file to ``out`` (CSV or
    Parquet, as the source) and return its path. ``real`` is the profiled file: every
    generated row is checked against its rows and regenerated while it equals one. It must
    be passed explicitly; ``None`` (the real file is not at hand) skips that check, and the
    result is then only probably free of real rows."""
    if profile.get("version") != PROFILE_VERSION:
        raise FakeDataError(f"profile version {profile.get('version')!r} is not supported")
    if rows < 0:
        raise FakeDataError("rows must be ≥ 0")
    schema = schema_from_text(profile["arrow_schema"])
    columns = profile["columns"]
    is_csv = profile["format"] == "csv"
    table = _table(schema, columns, rows, seed, 0, is_csv)
    real_keys = None
    if real is not None:
        real_keys = _real_keys(Path(real), profile, schema)
        table = _without_real_rows(table, real_keys, Path(real), profile, schema, seed, is_csv)
    if is_csv:
        table = _text_stays_text(table, columns, real_keys)
    out = Path(out)
    if is_csv:
        _write_csv(table, columns, out, profile.get("delimiter") or ",")
    else:
        pq.write_table(table, out)
    return out


def _without_real_rows(
    table: pa.Table,
    real_keys: pa.Array,
    real: Path,
    profile: dict,
    schema: pa.Schema,
    seed: int,
    is_csv: bool,
) -> pa.Table:
    """``table`` with every row that is a row of ``real`` replaced by a new one. Each round
    draws enough candidates for the rows still missing at the share of good rows seen so far
    (a small space of rows may leave only 1 in 16 usable), and keeps the first good ones."""
    rows, columns = table.num_rows, profile["columns"]
    clash = pc.is_in(_row_keys(table), value_set=real_keys)
    kept = table.filter(pc.invert(clash))
    drawn = rows
    for round_ in range(1, MAX_ROUNDS + 1):
        missing = rows - kept.num_rows
        if not missing:
            return kept
        good_share = max(kept.num_rows / drawn, 1 / 1024)
        count = min(max(math.ceil(missing / good_share * 1.5), 64), MAX_CANDIDATES)
        candidates = _table(schema, columns, count, seed, round_, is_csv)
        drawn += count
        good = candidates.filter(pc.invert(pc.is_in(_row_keys(candidates), value_set=real_keys)))
        kept = pa.concat_tables([kept, good.slice(0, missing)])
    missing = rows - kept.num_rows
    if missing:
        raise FakeDataError(
            f"{missing} of {rows} generated rows are still rows of {real} after {MAX_ROUNDS} "
            "rounds: its columns allow too few distinct rows to avoid them"
        )
    return kept


# --- values ----------------------------------------------------------------------------------


def _seed(seed: int, round_: int, index: int, purpose: str) -> int:
    text = f"{seed}/{round_}/{index}/{purpose}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:7], "big")


def _table(
    schema: pa.Schema, columns: list[dict], rows: int, seed: int, round_: int, is_csv: bool
) -> pa.Table:
    arrays = []
    for index, (field, column) in enumerate(zip(schema, columns, strict=True)):
        uniform = pc.random(rows, initializer=_seed(seed, round_, index, "values"))
        values = _values(field.type, column, uniform, _seed(seed, round_, index, "text"))
        share = column.get("null_share") or 0.0
        if share and len(values):
            nulls = pc.less(pc.random(rows, initializer=_seed(seed, round_, index, "null")), share)
            values = pc.if_else(nulls, pa.scalar(None, values.type), values)
        arrays.append(_cast(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _values(arrow_type: pa.DataType, column: dict, uniform: pa.Array, seed: int) -> pa.Array:
    n = len(uniform)
    kind = column["type"]
    if column.get("unsupported") or not supported(arrow_type):
        return pa.nulls(n, arrow_type)
    if kind == "boolean":
        return pc.less(uniform, column.get("true_share", 0.5))
    if kind == "string":
        if column.get("categories"):
            return _categories(column["categories"], column["weights"], uniform)
        return _free_text(n, *column.get("length", [1, 12]), seed)
    if column.get("min") is None:  # no value seen: only nulls
        return pa.nulls(n, arrow_type)
    if kind == "integer":
        return _integers(int(column["min"]), int(column["max"]), uniform)
    if kind == "number":
        low, high = float(column["min"]), float(column["max"])
        values = pc.add(low, pc.multiply(uniform, high - low))
        if column.get("decimals") is not None:
            values = pc.round(values, column["decimals"])
        return _clamp(values, low, high)
    return _datetimes(arrow_type, column["min"], column["max"], uniform)


def _clamp(values: pa.Array, low: Any, high: Any) -> pa.Array:
    return pc.min_element_wise(pc.max_element_wise(values, low), high)


def _integers(low: int, high: int, uniform: pa.Array) -> pa.Array:
    spread = pc.floor(pc.multiply(uniform, float(high - low + 1)))
    values = pc.cast(_clamp(pc.add(float(low), spread), float(low), float(high)), pa.int64())
    return _clamp(values, low, high)  # a float64 wider than 2**53 may round out of range


def _datetimes(arrow_type: pa.DataType, low: str, high: str, uniform: pa.Array) -> pa.Array:
    """Uniform between two ISO values, in days (dates) or microseconds (timestamps)."""
    if pa.types.is_date(arrow_type):
        ticks, width = pa.date32(), pa.int32()
        lo, hi = (dt.date.fromisoformat(v) for v in (low, high))
    else:
        ticks, width = pa.timestamp("us", arrow_type.tz), pa.int64()
        lo, hi = (dt.datetime.fromisoformat(v) for v in (low, high))
    lo_n, hi_n = (pa.scalar(v, ticks).cast(width).as_py() for v in (lo, hi))
    return _integers(lo_n, hi_n, uniform).cast(width).cast(ticks)


def _categories(categories: list[str], weights: list[float], uniform: pa.Array) -> pa.Array:
    """A category per value with the profiled shares: the index is how many cumulative
    shares the uniform value passes."""
    total = sum(weights) or 1.0
    index = pa.array([0] * len(uniform), pa.int64())
    cumulative = 0.0
    for weight in weights[:-1]:
        cumulative += weight / total
        index = pc.add(index, pc.cast(pc.greater_equal(uniform, cumulative), pa.int64()))
    return pc.take(pa.array(categories, pa.string()), index)


def _free_text(n: int, shortest: int, longest: int, seed: int) -> pa.Array:
    rng = random.Random(seed)  # noqa: S311 - fake data, not secrets
    shortest, longest = max(shortest, 1), max(longest, shortest, 1)
    letters = FREE_TEXT_ALPHABET[:26]
    values = []
    for _ in range(n):
        text = rng.choice(letters) + "".join(
            rng.choices(FREE_TEXT_ALPHABET, k=rng.randint(shortest, longest) - 1)
        )
        values.append("x" + text[1:] if text.strip().lower() in RESERVED_WORDS else text)
    return pa.array(values, pa.string())


def _text_stays_text(table: pa.Table, columns: list[dict], real_keys: pa.Array | None):
    """In a CSV, a string column must read back as text: if every generated value would read
    as a number, boolean or datetime (categories "1", "2", "x" drawn without "x"), one value
    becomes a category that reads as text — in a row that is then still not a real one."""
    for i, column in enumerate(columns):
        values = table.column(i).combine_chunks()
        if column["type"] != "string" or infer_type(None, values) in (None, pa.string()):
            continue
        text = [
            c
            for c in column.get("categories", [])
            if infer_type(None, pa.array([c])) == pa.string()
        ]
        for row in range(min(table.num_rows, 100)):
            changed = (
                pc.if_else(
                    pc.equal(pa.array(range(table.num_rows)), row), pa.scalar(text[0]), values
                )
                if text
                else None
            )
            if changed is None:
                break
            candidate = table.set_column(i, table.field(i), changed)
            if (
                real_keys is None
                or not pc.is_in(_row_keys(candidate.slice(row, 1)), value_set=real_keys)[0].as_py()
            ):
                table = candidate
                break
    return table


def _cast(values: pa.Array, arrow_type: pa.DataType) -> pa.Array:
    if values.type == arrow_type:
        return values
    if pa.types.is_dictionary(arrow_type):
        values = pc.cast(values, arrow_type.value_type).dictionary_encode()
    return pc.cast(values, arrow_type, safe=False)


# --- the rows of the real file ---------------------------------------------------------------


def _row_keys(table: pa.Table | pa.RecordBatch) -> pa.Array:
    """A 64-bit hash per row of its canonical text (each value cast to text, nulls and
    unsupported values marked, joined): equal rows, equal keys."""
    parts = []
    for field, values in zip(table.schema, table.columns, strict=True):
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        parts.append(_canonical(field.type, values))
    joined = pc.binary_join_element_wise(
        *parts, _SEPARATOR, null_handling="replace", null_replacement=_NULL
    )
    blake = hashlib.blake2b
    digests = b"".join(
        [blake(v, digest_size=8).digest() for v in joined.cast(pa.binary()).to_pylist()]
    )
    return pa.Array.from_buffers(pa.uint64(), len(joined), [None, pa.py_buffer(digests)])


def _canonical(arrow_type: pa.DataType, values: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arrow_type):
        values = values.cast(arrow_type.value_type)
        arrow_type = arrow_type.value_type
    if not supported(arrow_type) or pa.types.is_null(arrow_type):
        # Generated as null: a real row with any value here is not equal to a fake one.
        return pc.if_else(pc.is_null(values), pa.scalar(None, pa.string()), "\x01")
    if pa.types.is_floating(arrow_type):
        values = pc.add(values, pa.scalar(0.0, arrow_type))  # -0.0 == 0.0
    return values if is_text(arrow_type) else pc.cast(values, pa.string())


def _real_keys(path: Path, profile: dict[str, Any], schema: pa.Schema) -> pa.Array:
    """The hash set of the real file's rows, read with the profile's types."""
    if sha256_file(path) != profile["fingerprint"]:
        raise FakeDataError(f"{path} is not the file this profile was made from")
    description = FileDescription(
        fingerprint=profile["fingerprint"],
        rows=profile["rows"],
        columns=[{"name": c["name"], "type": c["type"]} for c in profile["columns"]],
        size_bytes=0,
        format=profile["format"],
        schema=schema,
        delimiter=profile.get("delimiter") or ",",
    )
    keys = [_row_keys(batch) for batch in read_batches(path, description)]
    return pa.concat_arrays(keys) if keys else pa.array([], pa.uint64())


# --- writing ---------------------------------------------------------------------------------


def _write_csv(table: pa.Table, columns: list[dict], out: Path, delimiter: str) -> None:
    """A number column whose generated values are all whole is written with a decimal point
    ("3.0", not pyarrow's "3"), so that it reads back as a number, not an integer."""
    arrays = list(table.columns)
    for i, column in enumerate(columns):
        values = arrays[i]
        if column["type"] != "number" or not pa.types.is_floating(values.type):
            continue
        finite = values.filter(pc.is_finite(values))
        if len(finite) and pc.all(pc.equal(pc.floor(finite), finite)).as_py():
            text = pc.cast(values, pa.string())
            whole = pc.invert(pc.match_substring_regex(text, r"[.eEn]"))
            arrays[i] = pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)
    pcsv.write_csv(
        pa.Table.from_arrays(arrays, names=table.column_names),
        out,
        write_options=pcsv.WriteOptions(delimiter=delimiter),
    )
