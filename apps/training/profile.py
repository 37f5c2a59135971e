"""The profile of a data file: per column its type, null share and the ranges or value sets
its values take — enough to generate look-alike data (``fakedata.generate``), and stored
(JSON) on a ``DatasetVersion``.

A profile holds **no row** of the data: only per-column aggregates (min and max, a category
set with shares, a length range, a share of nulls or of ``true``), each computed over one
column alone, so no combination of values in a row can be read back from it. A string
column's values are kept only as a category set, and only when they repeat (at most
``MAX_CATEGORIES`` distinct values and at most half as many distinct values as non-null ones):
a column of unique values — names, ids, e-mail addresses — never reaches the profile, even in
a small dataset; it is described as free text by its length range.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .datafiles import FileDescription, describe, read_batches, type_name

PROFILE_VERSION = 1
DEFAULT_MAX_ROWS = 1_000_000
MAX_CATEGORIES = 50
MAX_DECIMALS = 6


def profile(
    path: os.PathLike | str,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    *,
    description: FileDescription | None = None,
) -> dict[str, Any]:
    """The profile of the file at ``path`` from its first ``max_rows`` rows (all with
    ``None``); its types are those of the whole file (``describe``, or ``description`` when
    the caller has it). JSON-serialisable."""
    description = description or describe(path)
    columns = [_Column(field) for field in description.schema]
    profiled = 0
    for batch in read_batches(path, description, max_rows=max_rows):
        profiled += batch.num_rows
        for column, values in zip(columns, batch.columns, strict=True):
            column.add(values)
    return {
        "version": PROFILE_VERSION,
        "format": description.format,
        "delimiter": description.delimiter if description.format == "csv" else None,
        "fingerprint": description.fingerprint,
        "rows": description.rows,
        "profiled_rows": profiled,
        "arrow_schema": schema_to_text(description.schema),
        "columns": [column.result(profiled) for column in columns],
    }


def schema_to_text(schema: pa.Schema) -> str:
    """The Arrow schema (names and exact types, no metadata) as base64 text for JSON."""
    return base64.b64encode(schema.remove_metadata().serialize().to_pybytes()).decode()


def schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def is_text(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def supported(arrow_type: pa.DataType) -> bool:
    """Whether values of this type are profiled (and generated); others are only counted."""
    return type_name(arrow_type) != "string" or is_text(arrow_type)


class _Column:
    """Aggregates of one column, batch by batch."""

    def __init__(self, field: pa.Field):
        self.field = field
        self.type = type_name(field.type)
        self.supported = supported(field.type)
        self.nulls = 0
        self.non_null = 0
        self.low: Any = None
        self.high: Any = None
        self.decimals: int | None = 0
        self.trues = 0
        self.counts: dict[str, int] | None = {}

    def add(self, values: pa.Array) -> None:
        self.nulls += values.null_count
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        values = values.drop_null()
        self.non_null += len(values)
        if not len(values) or not self.supported:
            return
        if self.type == "boolean":
            self.trues += pc.sum(values).as_py() or 0
        elif self.type == "string":
            self._add_text(values)
        else:
            self._add_range(values)

    def _add_range(self, values: pa.Array) -> None:
        if self.type == "number":
            if pa.types.is_floating(values.type):
                values = values.filter(pc.is_finite(values))
            if not len(values):
                return
            self._add_decimals(values)
        if pa.types.is_timestamp(values.type) and values.type.unit == "ns":
            values = values.cast(pa.timestamp("us", values.type.tz), safe=False)
        bounds = pc.min_max(values)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)

    def _add_decimals(self, values: pa.Array) -> None:
        """The fewest decimals that write every value exactly (None: more than
        ``MAX_DECIMALS``), so that generated prices have cents and counts stay whole."""
        if pa.types.is_decimal(values.type):
            self.decimals = values.type.scale
            return
        while self.decimals is not None:
            if pc.all(pc.equal(pc.round(values, self.decimals), values)).as_py():
                return
            self.decimals = self.decimals + 1 if self.decimals < MAX_DECIMALS else None

    def _add_text(self, values: pa.Array) -> None:
        lengths = pc.min_max(pc.utf8_length(values))
        low, high = lengths["min"].as_py(), lengths["max"].as_py()
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        if self.counts is None:
            return
        for item in pc.value_counts(values).to_pylist():
            self.counts[item["values"]] = self.counts.get(item["values"], 0) + item["counts"]
        if len(self.counts) > MAX_CATEGORIES:
            self.counts = None  # free text; the values seen are dropped

    def result(self, rows: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.field.name,
            "type": self.type,
            "arrow_type": str(self.field.type),
            "null_share": round(self.nulls / rows, 6) if rows else 1.0,
        }
        if not self.supported:
            out["unsupported"] = True
        elif self.type == "boolean":
            out["true_share"] = round(self.trues / self.non_null, 6) if self.non_null else 0.5
        elif self.type == "string":
            out.update(self._text_result())
        else:
            out["min"], out["max"] = _json_value(self.low), _json_value(self.high)
            if self.type == "number":
                out["decimals"] = self.decimals
        return out

    def _text_result(self) -> dict[str, Any]:
        counts = self.counts
        if counts and len(counts) * 2 <= self.non_null:
            ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            return {
                "categories": [value for value, _ in ordered],
                "weights": [round(count / self.non_null, 6) for _, count in ordered],
            }
        return {"free_text": True, "length": [self.low or 0, self.high or 0]}


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if hasattr(value, "as_tuple"):  # Decimal
        return float(value)
    return value
