"""Fake data: the real schema (columns in order, types, ranges, categories, null shares),
deterministic for a seed, and never a row of the real data."""

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from apps.training.datafiles import describe, read_batches
from apps.training.fakedata import FakeDataError, generate
from apps.training.profile import profile

from .test_profile import customers_csv


def rows_of(path):
    d = describe(path)
    return [tuple(row.values()) for b in read_batches(path, d) for row in b.to_pylist()]


def test_fake_csv_has_the_real_schema_ranges_and_categories(tmp_path):
    real = customers_csv(tmp_path / "customers.csv")
    prof = profile(real)
    fake = generate(prof, 2000, seed=7, out=tmp_path / "fake.csv", real=real)
    assert fake == tmp_path / "fake.csv"
    assert describe(fake).columns == describe(real).columns  # names, order and types
    table = pa.Table.from_batches(list(read_batches(fake, describe(fake))))
    assert table.num_rows == 2000
    cols = table.to_pydict()
    assert all(0 <= v <= 399 for v in cols["id"])
    amounts = [v for v in cols["amount"] if v is not None]
    assert all(10.25 <= v <= 109.75 and round(v, 2) == v for v in amounts)
    assert 0.07 < cols["amount"].count(None) / 2000 < 0.13  # profiled: 10 %
    assert 0.2 < sum(cols["churned"]) / 2000 < 0.3  # profiled: 25 % true
    assert set(cols["plan"]) == {"basic", "pro", "team"}
    days = set(cols["signup"])
    assert min(days) >= dt.date(2024, 1, 1) and max(days) <= dt.date(2024, 1, 28)
    assert all(8 <= len(v) <= 10 for v in cols["email"])
    assert not set(rows_of(fake)) & set(rows_of(real))


def test_fake_parquet_has_the_exact_arrow_schema(tmp_path):
    real = tmp_path / "real.parquet"
    table = pa.table(
        {
            "n": pa.array([1, 5, None, 3] * 5, pa.int16()),
            "ratio": pa.array([0.5, 1.5, 2.0, None] * 5, pa.float32()),
            "at": pa.array([0, 1000, 2000, None] * 5, pa.timestamp("ms", tz="UTC")),
            "plan": pa.array(["a", "b", "a", "b"] * 5).dictionary_encode(),
            "tags": [[1], [], None, [2]] * 5,
        }
    )
    pq.write_table(table, real)
    fake = generate(profile(real), 300, seed=1, out=tmp_path / "fake.parquet", real=real)
    got = pq.read_table(fake)
    assert got.schema.remove_metadata() == table.schema
    assert set(got.column("plan").to_pylist()) <= {"a", "b", None}
    assert got.column("tags").null_count == 300  # no name of its own: generated as nulls
    at = [v for v in got.column("at").to_pylist() if v is not None]
    assert min(at) >= dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert max(at) <= dt.datetime(1970, 1, 1, 0, 0, 2, tzinfo=dt.UTC)
    assert all(1 <= v <= 5 for v in got.column("n").to_pylist() if v is not None)


def test_the_same_seed_gives_the_same_file(tmp_path):
    real = customers_csv(tmp_path / "customers.csv")
    prof = profile(real)
    one = generate(prof, 500, seed=3, out=tmp_path / "1.csv", real=real).read_bytes()
    two = generate(prof, 500, seed=3, out=tmp_path / "2.csv", real=real).read_bytes()
    other = generate(prof, 500, seed=4, out=tmp_path / "3.csv", real=real).read_bytes()
    assert one == two and one != other


def small_space(tmp_path, missing):
    """Two columns of 3 categories each: 9 possible rows, the real data has all but
    ``missing`` of them (each several times)."""
    pairs = [(a, b) for a in "xyz" for b in "pqr" if (a, b) not in missing]
    path = tmp_path / "small.csv"
    path.write_text("a,b\n" + "".join(f"{a},{b}\n" for a, b in pairs * 4))
    return path


def test_no_generated_row_is_a_real_row(tmp_path):
    real = small_space(tmp_path, missing={("z", "r")})
    prof = profile(real)
    # Unchecked, most rows are real ones: the check is what keeps them out.
    unchecked = generate(prof, 200, seed=1, out=tmp_path / "u.csv", real=None)
    assert set(rows_of(unchecked)) & set(rows_of(real))
    fake = generate(prof, 200, seed=1, out=tmp_path / "fake.csv", real=real)
    assert set(rows_of(fake)) == {("z", "r")}
    assert len(rows_of(fake)) == 200


def test_a_profile_that_allows_only_real_rows_is_refused(tmp_path):
    real = small_space(tmp_path, missing=set())
    with pytest.raises(FakeDataError, match="allow too few distinct rows"):
        generate(profile(real), 10, seed=1, out=tmp_path / "fake.csv", real=real)


def test_the_real_file_must_be_the_profiled_one(tmp_path):
    real = customers_csv(tmp_path / "customers.csv")
    prof = profile(real)
    other = customers_csv(tmp_path / "other.csv", rows=10)
    with pytest.raises(FakeDataError, match="other.csv is not the file this profile"):
        generate(prof, 10, seed=1, out=tmp_path / "fake.csv", real=other)


def test_csv_columns_read_back_as_their_types(tmp_path):
    """Whole numbers stay numbers ("3.0"), and a text column whose draw holds only its
    numeric-looking categories still reads back as text."""
    real = tmp_path / "r.csv"
    real.write_text("x,code\n" + "1.0,1\n2.0,2\n3.0,1\n" * 30 + "3.0,x\n")
    prof = profile(real)
    assert describe(real).columns == [
        {"name": "x", "type": "number"},
        {"name": "code", "type": "string"},
    ]
    for seed in range(5):
        fake = generate(prof, 3, seed=seed, out=tmp_path / f"f{seed}.csv", real=real)
        assert describe(fake).columns == describe(real).columns
