"""Where observations and labels live: one Parquet file per accepted batch, in a folder per
environment and storage window, read back as one Arrow table per check.

Layout under ``settings.OBSERVATION_DIR``::

    <environment id>/observations/<window start, UTC, %Y%m%dT%H%M%S>/<batch uuid>.parquet
    <environment id>/labels/<window start>/<batch uuid>.parquet
    <environment id>/reference/<reference fingerprint>.parquet   (reference.py; never pruned)

An observation table has the columns ``request_id`` (string), ``ts`` (timestamp[us, UTC]),
``model_version_id`` (int64), ``prediction`` (float64 or string), ``latency_ms`` (float64,
null when not sent) and one column per feature (float64 for numeric, string for categorical).
A label table has ``request_id`` (string), ``label`` (float64 or string), ``labelled_at``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from django.conf import settings

RESERVED = ("request_id", "ts", "model_version_id", "prediction", "latency_ms")
LABEL = "label"


def window_seconds() -> int:
    return int(settings.OBSERVATION_WINDOW_SECONDS)


def window_of(at: datetime, seconds: int | None = None) -> datetime:
    """The start of the storage window ``at`` falls in (UTC, aligned to the epoch)."""
    seconds = seconds or window_seconds()
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def _root() -> Path:
    return Path(settings.OBSERVATION_DIR)


def _relpath(environment_id: int, what: str, window_start: datetime, name: str) -> str:
    stamp = window_start.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{environment_id}/{what}/{stamp}/{name}.parquet"


def write_table(
    *, environment_id: int, what: str, window_start: datetime, table: pa.Table
) -> tuple[str, int]:
    """Write one batch atomically (a temporary name, then a rename) and return its path relative
    to the observation directory and its size in bytes. ``what``: "observations" or "labels"."""
    rel = _relpath(environment_id, what, window_start, uuid.uuid4().hex)
    path = _root() / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    _write(table, tmp)
    os.replace(tmp, path)
    return rel, path.stat().st_size


def _write(table: pa.Table, path: Path) -> None:
    # Dictionary encoding only where it pays (categories): tried on every float column it is
    # given up on, after costing twice the write time (bench/ingest.py).
    strings = [
        f.name
        for f in table.schema
        if f.name != "request_id" and (pa.types.is_string(f.type) or pa.types.is_dictionary(f.type))
    ]
    pq.write_table(table, path, compression="zstd", use_dictionary=strings or False)


def write_reference(*, environment_id: int, name: str, table: pa.Table) -> tuple[str, int]:
    """Write a reference profile's rows (``reference.py``) like a batch: atomically."""
    rel = f"{environment_id}/reference/{name}.parquet"
    path = _root() / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    _write(table, tmp)
    os.replace(tmp, path)
    return rel, path.stat().st_size


def path_of(rel: str) -> Path:
    return _root() / rel


def delete_file(rel: str) -> None:
    try:
        (_root() / rel).unlink()
    except FileNotFoundError:
        pass


def read_files(paths: Iterable[str], columns: Sequence[str] | None = None) -> pa.Table | None:
    """The batches at ``paths`` as one table (schemas unified: a feature a batch lacks is null),
    or None when there is none."""
    tables = []
    for rel in paths:
        try:
            tables.append(pq.read_table(_root() / rel))
        except FileNotFoundError:
            continue  # pruned between the query and the read
    if not tables:
        return None
    table = pa.concat_tables(tables, promote_options="permissive")
    if columns is not None:
        keep = [c for c in columns if c in table.column_names]
        table = table.select(keep)
    return table


def read_window(
    *,
    environment_id: int,
    start: datetime,
    end: datetime,
    columns: Sequence[str] | None = None,
    with_labels: bool = False,
) -> pa.Table | None:
    """The observations of one environment with ``start <= ts < end``; with ``with_labels`` a
    ``label`` column joined by request id (null where none arrived). None: no observations."""
    from .models import LabelBatch, ObservationBatch

    paths = ObservationBatch.objects.filter(
        environment_id=environment_id, first_at__lt=end, last_at__gte=start
    ).values_list("path", flat=True)
    wanted = None if columns is None else list(dict.fromkeys([*RESERVED, *columns]))
    table = read_files(paths, wanted)
    if table is None:
        return None
    ts = table.column("ts")
    mask = pc.and_(
        pc.greater_equal(ts, pa.scalar(start.astimezone(UTC), pa.timestamp("us", tz="UTC"))),
        pc.less(ts, pa.scalar(end.astimezone(UTC), pa.timestamp("us", tz="UTC"))),
    )
    table = table.filter(mask)
    if with_labels:
        # Labels arrive later than their observations: any label batch received since the
        # window began may hold one of its request ids.
        label_paths = LabelBatch.objects.filter(
            environment_id=environment_id, received_at__gte=start - timedelta(days=1)
        ).values_list("path", flat=True)
        labels = read_files(label_paths, ["request_id", LABEL, "labelled_at"])
        if labels is None or labels.num_rows == 0:
            table = table.append_column(LABEL, pa.nulls(table.num_rows))
        else:
            # The latest label of a request id wins.
            labels = labels.sort_by([("labelled_at", "descending")])
            first = pc.index_in(table.column("request_id"), value_set=labels.column("request_id"))
            table = table.append_column(LABEL, pc.take(labels.column(LABEL), first))
    return table
