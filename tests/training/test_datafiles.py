"""Data files: what describe() says of a CSV or Parquet file (fingerprint of the bytes, rows,
types over every row), in bounded memory, and the content-addressed store."""

import hashlib
import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from apps.training import datafiles
from apps.training.datafiles import DataFileError, describe, read_batches, store


def write(path, text):
    path.write_text(text)
    return path


def types(description):
    return {c["name"]: c["type"] for c in description.columns}


def test_a_csv_is_described_with_every_type(tmp_path):
    path = write(
        tmp_path / "raw.csv",
        "id,price,churned,day,seen_at,seen_utc,plan,nothing\n"
        "1,9.5,true,2024-01-02,2024-01-02 03:04:05,2024-01-02T03:04:05Z,basic,\n"
        '2,,False,2024-02-03,2024-01-03T01:02:03,2024-01-02T03:04:05+01:00,"pro, yearly",\n'
        "3,10,TRUE,,,,NA,\n",
    )
    d = describe(path)
    assert [c["name"] for c in d.columns] == [
        "id", "price", "churned", "day", "seen_at", "seen_utc", "plan", "nothing"
    ]  # fmt: skip
    assert types(d) == {
        "id": "integer",
        "price": "number",
        "churned": "boolean",
        "day": "datetime",
        "seen_at": "datetime",
        "seen_utc": "datetime",
        "plan": "string",
        "nothing": "string",  # null in every row
    }
    assert (d.rows, d.format, d.size_bytes) == (3, "csv", path.stat().st_size)
    assert d.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert d.to_dict() == {
        "fingerprint": d.fingerprint,
        "rows": 3,
        "columns": d.columns,
        "size_bytes": d.size_bytes,
        "format": "csv",
    }
    rows = next(read_batches(path, d)).to_pylist()
    assert rows[1]["plan"] == "pro, yearly" and rows[1]["price"] is None
    assert rows[2]["plan"] is None  # "NA"


def test_types_are_inferred_over_every_row_not_the_first_block(tmp_path, monkeypatch):
    monkeypatch.setattr(datafiles, "CSV_BLOCK_BYTES", 1024)
    body = "".join(f"{i},{i},2024-01-0{i % 9 + 1},{i % 2}\n" for i in range(2000))
    path = write(tmp_path / "late.csv", "a,b,c,d\n" + body + "1.5,x,2024-01-01 10:00:00,1\n")
    d = describe(path)
    assert d.rows == 2001
    assert types(d) == {"a": "number", "b": "string", "c": "datetime", "d": "integer"}
    assert d.schema.field("c").type == pa.timestamp("us")  # dates widened to timestamps
    assert sum(batch.num_rows for batch in read_batches(path, d)) == 2001
    assert sum(batch.num_rows for batch in read_batches(path, d, max_rows=700)) == 700


def test_quoted_newlines_delimiters_and_tsv(tmp_path):
    quoted = describe(write(tmp_path / "q.csv", 'id,note\n1,"two\nlines"\n2,plain\n'))
    assert (quoted.rows, types(quoted)) == (2, {"id": "integer", "note": "string"})
    semi = describe(write(tmp_path / "s.csv", "id;amount\n1;2.5\n2;3\n"))
    assert (semi.delimiter, types(semi)) == (";", {"id": "integer", "amount": "number"})
    tsv = describe(write(tmp_path / "t.tsv", "id\tname\n1\ta,b\n"))
    assert (tsv.format, types(tsv)) == ("csv", {"id": "integer", "name": "string"})


def test_the_fingerprint_is_of_the_content(tmp_path):
    first = write(tmp_path / "a.csv", "x\n1\n2\n")
    same = write(tmp_path / "b.csv", "x\n1\n2\n")
    changed = write(tmp_path / "c.csv", "x\n1\n3\n")
    assert describe(first).fingerprint == describe(same).fingerprint
    assert describe(first) == describe(same)
    assert describe(changed).fingerprint != describe(first).fingerprint


def test_a_parquet_file_is_described_from_its_metadata(tmp_path):
    table = pa.table(
        {
            "small": pa.array([1, 2, 3], pa.int32()),
            "ratio": pa.array([0.5, None, 1.5], pa.float32()),
            "flag": [True, False, None],
            "at": pa.array([1, 2, 3], pa.timestamp("ms", tz="UTC")),
            "day": pa.array([19000, 19001, None], pa.date32()),
            "plan": pa.array(["a", "b", "a"]).dictionary_encode(),
            "tags": [[1], [], None],
        }
    )
    path = tmp_path / "f.parquet"
    pq.write_table(table, path, row_group_size=2)
    d = describe(path)
    assert (d.rows, d.format) == (3, "parquet")
    assert types(d) == {
        "small": "integer",
        "ratio": "number",
        "flag": "boolean",
        "at": "datetime",
        "day": "datetime",
        "plan": "string",
        "tags": "string",  # no name of its own: shown as text
    }
    assert d.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sum(b.num_rows for b in read_batches(path, d)) == 3


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "is empty"),
        ("data.xlsx", b"x", "unknown data file format"),
        ("bad.parquet", b"not parquet at all", "cannot read as Parquet"),
        ("latin.csv", b"name\ncaf\xe9\n", "cannot read as CSV"),
        ("dup.csv", b"a,b,a\n1,2,3\n", "duplicate column names"),
    ],
)
def test_errors_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileError) as caught:
        describe(path)
    assert str(path) in str(caught.value) and message in str(caught.value)
    assert caught.value.path == str(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(DataFileError, match="missing.csv: cannot be read"):
        describe(tmp_path / "missing.csv")


def _peak_describe(path):
    """``describe(path)`` and Arrow's peak allocation while it ran (a pool of its own)."""
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        d = describe(path)
    finally:
        pa.set_memory_pool(previous)
    return d, pool.max_memory()


def test_a_large_csv_is_read_in_bounded_memory(tmp_path, monkeypatch):
    """200k rows (~9 MB), then 600k (~28 MB), with 256 KB blocks: Arrow's peak allocation
    does not grow with the file (it depends on the blocks in flight, so on the reader's
    threads: not a fixed share of one file), and the rows and hash come out right."""
    monkeypatch.setattr(datafiles, "CSV_BLOCK_BYTES", 256 << 10)
    peaks = {}
    for rows in (200_000, 600_000):
        path = tmp_path / f"big-{rows}.csv"
        with open(path, "w") as f:
            f.write("id,amount,segment,note\n")
            for i in range(rows):
                f.write(f"{i},{i * 0.25:.2f},{'abcde'[i % 5]},note number {i}\n")
        d, peaks[rows] = _peak_describe(path)
        assert d.rows == rows and d.size_bytes == path.stat().st_size
        assert d.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
        assert 0 < peaks[rows] < path.stat().st_size / 2, (peaks[rows], path.stat().st_size)
    # Three times the file, not three times the memory (a whole-file read would be 3x).
    assert peaks[600_000] < 1.5 * peaks[200_000] + (1 << 20), peaks


def test_store_copies_into_the_content_addressed_store(tmp_path):
    (tmp_path / "work").mkdir()
    source = write(tmp_path / "work" / "out.csv", "x\n1\n")
    root = tmp_path / "store"
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    stored = store(source, root)
    assert stored == root / sha[:2] / f"{sha}.csv"
    assert stored.read_bytes() == source.read_bytes()
    assert not stat.S_IMODE(stored.stat().st_mode) & 0o222  # read-only
    assert store(source, root) == stored  # idempotent
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == [f"{sha}.csv"]
    other = write(tmp_path / "work" / "other.parquet", "PAR1")
    assert store(other, root).suffix == ".parquet"


def test_store_refuses_a_symlink_out_of_the_source_directory(tmp_path):
    secret = write(tmp_path / "secret.csv", "password\nhunter2\n")
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "out" / "data.csv").symlink_to(secret)
    with pytest.raises(DataFileError, match="outside") as caught:
        store(work / "out" / "data.csv", tmp_path / "store")
    assert str(work / "out" / "data.csv") in str(caught.value)
    # A link to a file elsewhere in the workspace: outside out/ (the default boundary), but
    # followed when the boundary is the workspace.
    write(work / "real.csv", "x\n1\n")
    (work / "out" / "link.csv").symlink_to(work / "real.csv")
    with pytest.raises(DataFileError, match="outside"):
        store(work / "out" / "link.csv", tmp_path / "store")
    assert store(work / "out" / "link.csv", tmp_path / "store", within=work).exists()
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").glob(".incoming*"))


def test_store_refuses_what_is_not_a_regular_data_file(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataFileError, match="not a regular file"):
        store(fifo, tmp_path / "store")
    with pytest.raises(DataFileError, match="is empty"):
        store(write(tmp_path / "e.csv", ""), tmp_path / "store")
    with pytest.raises(DataFileError, match="unknown data file format"):
        store(write(tmp_path / "x.txt", "x"), tmp_path / "store")
    assert not list((tmp_path / "store").glob(".incoming*"))
