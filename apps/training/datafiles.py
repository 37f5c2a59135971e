"""Data files a job produces or consumes: what one holds (``describe``) and the content-addressed
copy the control plane keeps of it (``store``). Pure functions over files: no models, no
database; ``DatasetVersion`` rows are made from a ``FileDescription`` by the services.

Both read a file in bounded chunks, never whole: a CSV is parsed by pyarrow's streaming reader
one block at a time (its bytes hashed as the reader pulls them, so the file is read once), a
Parquet file is described from its footer (row count and schema) and hashed in chunks.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

CHUNK_BYTES = 1 << 20
CSV_BLOCK_BYTES = 4 << 20
BATCH_ROWS = 65_536
PROBE_VALUES = 256
# The extension decides the format; a .tsv is a CSV whose delimiter is a tab.
FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
DELIMITERS = (",", ";", "\t", "|")
# Read as null in a CSV. Narrower than pyarrow's default list ("n/a", "-nan", "#N/A", …), so
# fewer real strings turn into nulls.
NULL_VALUES = ["", "NA", "N/A", "NULL", "null", "NaN", "nan", "None"]
TYPES = ("integer", "number", "string", "boolean", "datetime")


class DataFileError(ValueError):
    """A file that cannot be described or stored; the message names the file."""

    def __init__(self, path: os.PathLike | str, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


@dataclass(frozen=True)
class FileDescription:
    """What a data file holds. ``fingerprint`` is the SHA-256 of the file's bytes — of its
    content, not of its name or time — so a re-run that writes identical bytes maps to the same
    dataset version, and any change of a byte is a new one. ``columns`` is
    ``[{"name", "type"}]`` with a type out of ``TYPES``, in file order."""

    fingerprint: str
    rows: int
    columns: list[dict[str, str]]
    size_bytes: int
    format: str
    # How to read it again with the same types (profile, fake data); not part of the identity.
    schema: pa.Schema = field(compare=False, repr=False, default=None)
    delimiter: str = field(compare=False, repr=False, default=",")

    def to_dict(self) -> dict[str, Any]:
        """The fields a ``DatasetVersion`` records (``job.result["datasets"][name]``)."""
        return {
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "columns": [dict(column) for column in self.columns],
            "size_bytes": self.size_bytes,
            "format": self.format,
        }


def file_format(path: os.PathLike | str) -> str:
    """``csv`` or ``parquet`` from the file's extension; anything else is refused."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise DataFileError(path, f"unknown data file format (expected one of {known})")
    return fmt


def type_name(arrow_type: pa.DataType) -> str:
    """The control plane's name of an Arrow type. Types it has no name for (lists, structs,
    times of day, all-null columns) are ``string``: shown as text, generated as nulls."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "number"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_date(arrow_type) or pa.types.is_timestamp(arrow_type):
        return "datetime"
    return "string"


def describe(path: os.PathLike | str) -> FileDescription:
    """Fingerprint, row count, columns and their types, size and format of a CSV or Parquet
    file, in bounded memory whatever its size. A CSV's types are inferred over all its rows
    (a column is ``integer`` only if every non-null value is one); a Parquet file's come from
    its schema."""
    path = Path(path)
    fmt = file_format(path)
    _check_regular(path)
    if fmt == "parquet":
        return _describe_parquet(path)
    return _describe_csv(path)


def read_batches(
    path: os.PathLike | str, description: FileDescription, *, max_rows: int | None = None
) -> Iterator[pa.RecordBatch]:
    """The file's rows in record batches with the types ``description`` gives (up to
    ``max_rows``), one batch in memory at a time."""
    path = Path(path)
    seen = 0
    if description.format == "parquet":
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)
        except (pa.ArrowException, OSError) as exc:
            raise DataFileError(path, f"cannot read as Parquet: {exc}") from exc
    else:
        batches = _typed_csv_batches(path, description)
    for batch in batches:
        if max_rows is not None and seen + batch.num_rows > max_rows:
            batch = batch.slice(0, max_rows - seen)
        seen += batch.num_rows
        if batch.num_rows:
            yield batch
        if max_rows is not None and seen >= max_rows:
            return


def sha256_file(path: os.PathLike | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# --- store -----------------------------------------------------------------------------------


def store(
    path: os.PathLike | str, root: os.PathLike | str, *, within: os.PathLike | str | None = None
) -> Path:
    """Copy ``path`` into the content-addressed store under ``root`` as
    ``root/<sha[:2]>/<sha>.<ext>`` and return where it is. Idempotent: the same bytes are one
    stored file. Atomic: the copy is written to a temporary file in ``root`` and renamed, so a
    stored file is always complete. The source must be a regular file inside ``within``
    (default: its own directory) once symlinks are resolved: a job cannot make the control
    plane copy a file from outside its workspace by producing a symlink."""
    path = Path(path)
    root = Path(root)
    ext = path.suffix.lower()
    file_format(path)
    boundary = Path(within if within is not None else path.parent).resolve()
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise DataFileError(path, f"cannot be read: {exc}") from exc
    if not real.is_relative_to(boundary):
        raise DataFileError(path, f"is a symlink to {real}, outside {boundary}; refused")
    # TRICKY: O_NOFOLLOW on the resolved path, so a symlink swapped in after the check above
    # fails to open instead of being followed; O_NONBLOCK so a FIFO cannot hang the open.
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise DataFileError(path, f"cannot be opened: {exc}") from exc
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataFileError(path, "is not a regular file")
        os.set_blocking(fd, True)
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".incoming-{uuid.uuid4().hex}{ext}"
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "xb") as dst:
                while chunk := src.read(CHUNK_BYTES):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if size == 0:
                raise DataFileError(path, "is empty")
            sha = digest.hexdigest()
            target = root / sha[:2] / f"{sha}{ext}"
            if target.exists():
                tmp.unlink()
                return target
            target.parent.mkdir(exist_ok=True)
            os.chmod(tmp, 0o444)  # content-addressed: never written again
            os.replace(tmp, target)
            return target
        finally:
            tmp.unlink(missing_ok=True)


# --- describe helpers ------------------------------------------------------------------------


def _check_regular(path: Path) -> None:
    try:
        info = path.stat()
    except OSError as exc:
        raise DataFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise DataFileError(path, "is not a regular file")
    if info.st_size == 0:
        raise DataFileError(path, "is empty")


def _columns(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": type_name(f.type)} for f in schema]


def _describe_parquet(path: Path) -> FileDescription:
    try:
        parquet = pq.ParquetFile(path)
        rows = parquet.metadata.num_rows
        schema = parquet.schema_arrow.remove_metadata()
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(path, f"cannot read as Parquet: {exc}") from exc
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return FileDescription(
        fingerprint=digest.hexdigest(),
        rows=rows,
        columns=_columns(schema),
        size_bytes=size,
        format="parquet",
        schema=schema,
    )


class _HashingReader:
    """A read-only file object that hashes and counts the bytes as they are read, so pyarrow's
    CSV reader pulling blocks from it is the only pass over the file."""

    def __init__(self, f):
        self._f = f
        self.digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK_BYTES):
            pass

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _delimiter(path: Path) -> str:
    """A tab for .tsv; else the candidate found most often in the header line (column names
    rarely hold delimiters), a comma when there is none."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    with open(path, "rb") as f:
        header = f.readline(CHUNK_BYTES)
    counts = {d: header.count(d.encode()) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_reader(source: Any, path: Path, delimiter: str, names: list[str] | None):
    """pyarrow's streaming CSV reader with every column read as text (types are inferred over
    the whole file by casting, see ``infer_type``; pyarrow infers from the first block only)."""
    convert = pcsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()) if names else None,
        null_values=NULL_VALUES,
        strings_can_be_null=True,
    )
    try:
        return pcsv.open_csv(
            source,
            read_options=pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=convert,
        )
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(path, f"cannot read as CSV: {exc}") from exc


def _csv_names(path: Path, delimiter: str) -> list[str]:
    """The header's column names (the reader parses the first block only)."""
    with open(path, "rb") as f:
        reader = _csv_reader(f, path, delimiter, None)
        names = reader.schema.names
        reader.close()
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataFileError(path, f"duplicate column names in the header: {duplicated}")
    return names


# The Arrow types a CSV column may be read as, in the order inference tries them, and from
# each the wider ones a later value may still fit (an integer column meeting 1.5 becomes a
# number; anything that fits none of them is a string).
_INT, _FLOAT, _BOOL = pa.int64(), pa.float64(), pa.bool_()
_DATE, _TS, _TSTZ = pa.date32(), pa.timestamp("us"), pa.timestamp("us", tz="UTC")
_WIDER: dict[pa.DataType | None, list[pa.DataType]] = {
    None: [_INT, _FLOAT, _BOOL, _DATE, _TS, _TSTZ],
    _INT: [_INT, _FLOAT],
    _FLOAT: [_FLOAT],
    _BOOL: [_BOOL],
    _DATE: [_DATE, _TS],
    _TS: [_TS],
    _TSTZ: [_TSTZ],
}


def _fits(values: pa.Array, arrow_type: pa.DataType) -> bool:
    # TRICKY: a cast that fails does not stop at the first bad value (a failing cast of a
    # block costs ~50× a succeeding one), so a small sample is tried first.
    for sample in (values.slice(0, PROBE_VALUES), values):
        try:
            pc.cast(sample, arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False
        if len(sample) == len(values):
            break
    return True


def infer_type(current: pa.DataType | None, values: pa.Array) -> pa.DataType | None:
    """The narrowest type at least as wide as ``current`` that every value fits; ``None``
    while all values seen are null."""
    if current == pa.string() or values.null_count == len(values):
        return current
    for candidate in _WIDER[current]:
        if _fits(values, candidate):
            return candidate
    return pa.string()


def _describe_csv(path: Path) -> FileDescription:
    delimiter = _delimiter(path)
    names = _csv_names(path, delimiter)
    types: list[pa.DataType | None] = [None] * len(names)
    rows = 0
    with open(path, "rb") as f:
        source = _HashingReader(f)
        reader = _csv_reader(source, path, delimiter, names)
        try:
            for batch in reader:
                rows += batch.num_rows
                for i, column in enumerate(batch.columns):
                    types[i] = infer_type(types[i], column)
        except (pa.ArrowException, OSError) as exc:
            raise DataFileError(path, f"cannot read as CSV (after row {rows}): {exc}") from exc
        source.drain()
    # A column that is null in every row has no type to find: text.
    schema = pa.schema([pa.field(n, t or pa.string()) for n, t in zip(names, types, strict=True)])
    return FileDescription(
        fingerprint=source.digest.hexdigest(),
        rows=rows,
        columns=_columns(schema),
        size_bytes=source.size,
        format="csv",
        schema=schema,
        delimiter=delimiter,
    )


def _typed_csv_batches(path: Path, description: FileDescription) -> Iterator[pa.RecordBatch]:
    """A CSV read as text and cast to the described types: the casts inference accepted."""
    schema = description.schema
    if schema is None:
        raise DataFileError(path, "has no schema in its description; describe() it again")
    with open(path, "rb") as f:
        reader = _csv_reader(f, path, description.delimiter, schema.names)
        try:
            for batch in reader:
                columns = [
                    pc.cast(column, target.type)
                    for column, target in zip(batch.columns, schema, strict=True)
                ]
                yield pa.RecordBatch.from_arrays(columns, schema=schema)
        except (pa.ArrowException, OSError) as exc:
            raise DataFileError(path, f"does not match its description any more: {exc}") from exc
