"""Parse and validate one posted batch of observations or labels into an Arrow table, column by
column, without a Python object per row beyond what the JSON parser makes.

Three shapes (docs/monitoring-ingest.md):

- ``application/json`` rows: ``{"model_version": 12, "rows": [{"request_id": "a1",
  "timestamp": "2026-12-02T07:00:00Z", "prediction": 0.8, "latency_ms": 3.1, "f0": 1.5}, ...]}``
- ``application/json`` columns: ``{"model_version": 12, "columns": {"request_id": [...], ...}}``
- ``application/x-ndjson``: one row object a line (model version in ``?model_version=``);
  parsed by pyarrow's C++ JSON reader, the fastest path.

The fast path converts a whole column at once (``pa.array(values, type)``); only when that fails
is the column scanned in Python to name the first bad row. A batch is refused whole: the first
problem raises :class:`IngestError` naming its row (0-based) and column.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pjson

from .choices import ColumnKind

TS_TYPE = pa.timestamp("us", tz="UTC")
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/ndjson")
# Observation fields that are not features (the store's reserved columns, as posted).
OBSERVATION_FIELDS = ("request_id", "timestamp", "prediction", "latency_ms")
LABEL_FIELDS = ("request_id", "label", "labelled_at")
# A timestamp later than this ahead of the server's clock is refused (a wrong clock or unit).
MAX_CLOCK_SKEW = timedelta(days=1)


class IngestError(ValueError):
    """The batch is refused (400); ``row`` (0-based) and ``column`` say where, when known."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None):
        self.row = row
        self.column = column
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)

    def as_dict(self) -> dict[str, Any]:
        return {"detail": str(self), "code": "invalid", "row": self.row, "column": self.column}


class BodyTooLarge(ValueError):
    """The body (or what it decompresses to) exceeds the limit (413)."""


@dataclass(frozen=True)
class Expected:
    """What a batch may hold: the reference's features and their kinds. ``strict`` False (no
    reference): any feature is accepted and its kind inferred from the batch."""

    features: Mapping[str, str] = field(default_factory=dict)
    prediction: str | None = None  # the prediction's kind when the reference has one
    strict: bool = True


@dataclass(frozen=True)
class Batch:
    table: pa.Table
    model_version_id: int | None
    first_at: datetime
    last_at: datetime

    @property
    def rows(self) -> int:
        return self.table.num_rows


# --- the body ---------------------------------------------------------------------------------


def decode_body(raw: bytes, encoding: str, *, max_bytes: int) -> bytes:
    """The body with its ``Content-Encoding`` (gzip or none) undone, at most ``max_bytes``."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise IngestError(f"Content-Encoding {encoding!r} is not supported (gzip or none).")
    out = []
    size = 0
    data = raw
    try:
        while data:
            # TRICKY: max_length bounds what one call may inflate, so a gzip bomb stops at the
            # limit instead of filling memory.
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk = inflater.decompress(data, max_bytes - size + 1)
            size += len(chunk)
            if size > max_bytes or inflater.unconsumed_tail:
                raise BodyTooLarge(f"the decompressed body is larger than {max_bytes} bytes")
            out.append(chunk)
            if not inflater.eof:
                raise IngestError("the gzip body is truncated")
            data = inflater.unused_data  # a further gzip member, if any
    except zlib.error as exc:
        raise IngestError(f"the body is not valid gzip: {exc}") from None
    return b"".join(out)


def _load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(f"invalid JSON: {exc}") from None


def _ndjson_rows(body: bytes) -> list[Any]:
    rows = []
    for line in body.splitlines():
        if not line.strip():
            continue  # rows are numbered without the blank lines
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise IngestError(f"invalid JSON: {exc}", row=len(rows)) from None
    return rows


def _is_ndjson(content_type: str) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() in NDJSON_TYPES


def _model_version(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise IngestError("model_version must be a model version id (an integer)")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise IngestError("model_version must be a model version id (an integer)") from None


# --- rows and columns into lists --------------------------------------------------------------


def _rows_to_columns(rows: Any, allowed: set[str] | None) -> tuple[dict[str, list], int]:
    if not isinstance(rows, list):
        raise IngestError('"rows" must be a list of objects')
    for i, row in enumerate(rows):
        if type(row) is not dict:
            raise IngestError("a row must be a JSON object", row=i)
    keys = set().union(*rows) if rows else set()
    if allowed is not None and not keys <= allowed:
        unknown = keys - allowed
        for i, row in enumerate(rows):  # only on error: name the first row that has one
            bad = sorted(unknown.intersection(row))
            if bad:
                raise IngestError(_unknown_message(allowed), row=i, column=bad[0])
    return {key: [row.get(key) for row in rows] for key in keys}, len(rows)


def _columns(columns: Any, allowed: set[str] | None) -> tuple[dict[str, list], int]:
    if not isinstance(columns, dict):
        raise IngestError('"columns" must be an object of lists')
    length = None
    for name, values in columns.items():
        if allowed is not None and name not in allowed:
            raise IngestError(_unknown_message(allowed), column=name)
        if not isinstance(values, list):
            raise IngestError("a column must be a list", column=name)
        if length is None:
            length = len(values)
        elif len(values) != length:
            raise IngestError(
                f"has {len(values)} values, the columns before it {length}", column=name
            )
    return columns, length or 0


def _unknown_message(allowed: set[str]) -> str:
    return f"unknown column (expected: {', '.join(sorted(allowed))})"


def _first_null(array: pa.Array) -> int | None:
    if array.null_count == 0:
        return None
    return int(pc.index(array.is_null(), True).as_py())


# --- one column -------------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float)


def _scan(values: Sequence, name: str, ok, expected: str) -> None:
    for i, value in enumerate(values):
        if value is not None and not ok(value):
            raise IngestError(
                f"expected {expected}, got {orjson.dumps(value).decode()[:60]}", row=i, column=name
            )


def numeric_column(values: list, name: str) -> pa.Array:
    try:
        return pa.array(values, type=pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        _scan(values, name, _is_number, "a number")
        raise IngestError("expected numbers", column=name) from None


def _as_text(v: Any) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def string_column(values: list, name: str) -> pa.Array:
    """Strings; integers and booleans are accepted as their text (a category id)."""
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        _scan(values, name, lambda v: isinstance(v, str | int), "a string")
        return pa.array([None if v is None else _as_text(v) for v in values], type=pa.string())


def inferred_column(values: list, name: str) -> pa.Array:
    """No reference to say: numbers (and booleans) are numeric, text is categorical."""
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        first = next((v for v in values if v is not None), None)
        if _is_number(first):
            _scan(values, name, _is_number, "a number like the rows before")
        _scan(values, name, lambda v: isinstance(v, str), "a string like the rows before")
        raise IngestError("mixed value types", column=name) from None
    return _normalise(array, name)


def _normalise(array: pa.Array, name: str) -> pa.Array:
    t = array.type
    if pa.types.is_null(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        return array.cast(pa.float64())
    if pa.types.is_boolean(t):
        return array.cast(pa.float64())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return array.cast(pa.string())
    raise IngestError(f"expected numbers or strings, got {t}", column=name)


def kind_column(values: list, name: str, kind: str | None) -> pa.Array:
    if kind == ColumnKind.NUMERIC:
        return numeric_column(values, name)
    if kind == ColumnKind.CATEGORICAL:
        return string_column(values, name)
    return inferred_column(values, name)


def required_strings(values: list | None, name: str, rows: int) -> pa.Array:
    if values is None:
        raise IngestError("missing", row=0, column=name)
    array = string_column(values, name)
    missing = _first_null(array)
    if missing is not None:
        raise IngestError("missing", row=missing, column=name)
    return array


def timestamp_column(values: list | None, name: str, *, nullable: bool = False) -> pa.Array:
    """ISO 8601 with a zone (the fast path; without one: UTC), or seconds since the epoch."""
    if values is None:
        raise IngestError("missing", row=0, column=name)
    try:
        array = pc.cast(pa.array(values, type=pa.string()), TS_TYPE)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        array = pa.array([_one_timestamp(v, i, name) for i, v in enumerate(values)], TS_TYPE)
    missing = _first_null(array)
    if missing is not None and not nullable:
        raise IngestError("missing", row=missing, column=name)
    return array


def _one_timestamp(value: Any, row: int, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise IngestError("not a time (seconds since 1970)", row=row, column=name) from None
    elif isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise IngestError(
                f"not an ISO 8601 time: {value[:40]!r}", row=row, column=name
            ) from None
        return at if at.tzinfo else at.replace(tzinfo=UTC)  # no zone: UTC
    raise IngestError("expected an ISO 8601 time or seconds since 1970", row=row, column=name)


def _constant_int(value: int | None, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n, pa.int64())
    return pa.array(np.full(n, value, dtype=np.int64))


# --- observations -----------------------------------------------------------------------------


def parse_observations(
    body: bytes,
    *,
    content_type: str,
    expected: Expected | Callable[[int | None], Expected],
    model_version: Any = None,
    now: datetime | None = None,
) -> Batch:
    """Parse one batch of observations into the store's layout (``store.py``). ``expected``
    may be a function of the batch's model version (read from the body or ``model_version``)
    that says what the batch may hold."""
    mv = _model_version(model_version)
    if _is_ndjson(content_type):
        expected = expected(mv) if callable(expected) else expected
        table = _ndjson_fast(body, expected)
        if table is not None:
            return _finish(table, mv, expected, now)
        columns, n = _rows_to_columns(_ndjson_rows(body), _allowed(expected))
    else:
        payload = _load_json(body)
        if not isinstance(payload, dict):
            raise IngestError('the body must be an object with "rows" or "columns"')
        extra = set(payload) - {"model_version", "rows", "columns"}
        if extra:
            raise IngestError(f"unknown key {sorted(extra)[0]!r} in the body")
        if "model_version" in payload:
            mv = _model_version(payload["model_version"])
        expected = expected(mv) if callable(expected) else expected
        if "rows" in payload:
            columns, n = _rows_to_columns(payload["rows"], _allowed(expected))
        elif "columns" in payload:
            columns, n = _columns(payload["columns"], _allowed(expected))
        else:
            raise IngestError('the body must hold "rows" or "columns"')
    if n == 0:
        raise IngestError("the batch has no rows")
    arrays = {
        "request_id": required_strings(columns.get("request_id"), "request_id", n),
        "ts": timestamp_column(columns.get("timestamp"), "timestamp"),
        "model_version_id": _constant_int(mv, n),
    }
    pred = columns.get("prediction")
    arrays["prediction"] = (
        pa.nulls(n, pa.float64())
        if pred is None
        else kind_column(pred, "prediction", expected.prediction)
    )
    latency = columns.get("latency_ms")
    arrays["latency_ms"] = (
        pa.nulls(n, pa.float64()) if latency is None else numeric_column(latency, "latency_ms")
    )
    names = [c for c in expected.features if c in columns] + sorted(
        c for c in columns if c not in expected.features and c not in OBSERVATION_FIELDS
    )
    for name in names:
        arrays[name] = kind_column(columns[name], name, expected.features.get(name))
    return _finish(pa.table(arrays), mv, expected, now)


def _allowed(expected: Expected) -> set[str] | None:
    return set(OBSERVATION_FIELDS) | set(expected.features) if expected.strict else None


def _ndjson_fast(body: bytes, expected: Expected) -> pa.Table | None:
    """The C++ reader with the expected types; None (use the slow path, which names the row)
    on anything it does not take: an unknown column, a wrong type, a numeric timestamp."""
    if not expected.strict:
        return None
    fields = [("request_id", pa.string()), ("timestamp", pa.string()), ("latency_ms", pa.float64())]
    if expected.prediction == ColumnKind.NUMERIC:
        fields.append(("prediction", pa.float64()))
    elif expected.prediction == ColumnKind.CATEGORICAL:
        fields.append(("prediction", pa.string()))
    for name, kind in expected.features.items():
        fields.append((name, pa.float64() if kind == ColumnKind.NUMERIC else pa.string()))
    schema = pa.schema(fields)
    try:
        raw = pjson.read_json(
            io.BytesIO(body),
            # One thread: a server runs a worker per core already (bench/ingest.py).
            read_options=pjson.ReadOptions(use_threads=False, block_size=8 << 20),
            parse_options=pjson.ParseOptions(
                explicit_schema=schema,
                unexpected_field_behavior="infer" if expected.prediction is None else "error",
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    extra = set(raw.column_names) - {f[0] for f in fields} - {"prediction"}
    if extra:
        return None
    n = raw.num_rows
    if n == 0:
        raise IngestError("the batch has no rows")
    request_id = raw.column("request_id").combine_chunks()
    missing = _first_null(request_id)
    if missing is not None:
        raise IngestError("missing", row=missing, column="request_id")
    try:
        ts = pc.cast(raw.column("timestamp").combine_chunks(), TS_TYPE)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    missing = _first_null(ts)
    if missing is not None:
        raise IngestError("missing", row=missing, column="timestamp")
    arrays: dict[str, pa.Array] = {"request_id": request_id, "ts": ts}
    arrays["model_version_id"] = pa.nulls(n, pa.int64())  # set by _finish
    if "prediction" in raw.column_names:
        prediction = raw.column("prediction").combine_chunks()
        try:
            arrays["prediction"] = _normalise(prediction, "prediction")
        except IngestError:
            return None
    else:
        arrays["prediction"] = pa.nulls(n, pa.float64())
    arrays["latency_ms"] = raw.column("latency_ms").combine_chunks()
    # A declared feature nobody sent is a column of nulls here (the other shapes leave it
    # out): the same thing once read back, where a missing feature is null too.
    for name in expected.features:
        arrays[name] = raw.column(name).combine_chunks()
    return pa.table(arrays)


def _finish(table: pa.Table, mv: int | None, expected: Expected, now: datetime | None) -> Batch:
    n = table.num_rows
    index = table.schema.get_field_index("model_version_id")
    table = table.set_column(index, "model_version_id", _constant_int(mv, n))
    ts = table.column("ts")
    first, last = pc.min_max(ts).values()
    now = now or datetime.now(UTC)
    if last.as_py() > now + MAX_CLOCK_SKEW:
        row = int(pc.index(pc.greater(ts, pa.scalar(now + MAX_CLOCK_SKEW, TS_TYPE)), True).as_py())
        raise IngestError(
            "in the future (more than a day ahead of the server)", row=row, column="timestamp"
        )
    return Batch(table=table, model_version_id=mv, first_at=first.as_py(), last_at=last.as_py())


# --- labels -----------------------------------------------------------------------------------


def parse_labels(body: bytes, *, content_type: str, now: datetime | None = None) -> pa.Table:
    """Parse one batch of labels: ``request_id``, ``label`` (a number or a string) and
    ``labelled_at`` (optional; default the time it arrives)."""
    allowed = set(LABEL_FIELDS)
    if _is_ndjson(content_type):
        columns, n = _rows_to_columns(_ndjson_rows(body), allowed)
    else:
        payload = _load_json(body)
        if not isinstance(payload, dict):
            raise IngestError('the body must be an object with "rows" or "columns"')
        extra = set(payload) - {"rows", "columns"}
        if extra:
            raise IngestError(f"unknown key {sorted(extra)[0]!r} in the body")
        if "rows" in payload:
            columns, n = _rows_to_columns(payload["rows"], allowed)
        elif "columns" in payload:
            columns, n = _columns(payload["columns"], allowed)
        else:
            raise IngestError('the body must hold "rows" or "columns"')
    if n == 0:
        raise IngestError("the batch has no labels")
    request_id = required_strings(columns.get("request_id"), "request_id", n)
    if columns.get("label") is None:
        raise IngestError("missing", row=0, column="label")
    label = inferred_column(columns["label"], "label")
    missing = _first_null(label)
    if missing is not None:
        raise IngestError("missing", row=missing, column="label")
    now = now or datetime.now(UTC)
    if columns.get("labelled_at") is None:
        at = pa.array(np.full(n, np.datetime64(now.replace(tzinfo=None), "us"))).cast(TS_TYPE)
    else:
        at = pc.fill_null(
            timestamp_column(columns["labelled_at"], "labelled_at", nullable=True),
            pa.scalar(now, TS_TYPE),
        )
    return pa.table({"request_id": request_id, "label": label, "labelled_at": at})
