"""Profiles: per column its type, ranges, category set or length range and null share,
JSON-serialisable, and holding no row of the data."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from apps.training import profile as profile_module
from apps.training.datafiles import describe
from apps.training.profile import profile, schema_from_text


def by_name(result):
    return {c["name"]: c for c in result["columns"]}


def customers_csv(path, rows=400):
    lines = ["id,amount,churned,signup,plan,email,score"]
    for i in range(rows):
        amount = "" if i % 10 == 0 else f"{10 + i * 0.25:.2f}"  # 10 % nulls
        churned = "true" if i % 4 == 0 else "false"
        plan = ["basic", "pro", "team"][i % 3]
        lines.append(f"{i},{amount},{churned},2024-01-{i % 28 + 1:02d},{plan},u{i}@x.org,{i % 7}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_csv_profile_has_what_look_alike_data_needs(tmp_path):
    path = customers_csv(tmp_path / "customers.csv")
    result = profile(path)
    assert json.loads(json.dumps(result)) == result
    assert (result["format"], result["rows"], result["profiled_rows"]) == ("csv", 400, 400)
    assert result["fingerprint"] == describe(path).fingerprint
    assert schema_from_text(result["arrow_schema"]) == describe(path).schema
    columns = by_name(result)
    assert [c["name"] for c in result["columns"]] == [
        "id", "amount", "churned", "signup", "plan", "email", "score"
    ]  # fmt: skip
    assert columns["id"] == {
        "name": "id", "type": "integer", "arrow_type": "int64", "null_share": 0.0,
        "min": 0, "max": 399,
    }  # fmt: skip
    amount = columns["amount"]
    assert (amount["type"], amount["min"], amount["max"]) == ("number", 10.25, 109.75)
    assert amount["decimals"] == 2 and amount["null_share"] == 0.1
    assert columns["churned"]["true_share"] == 0.25
    assert (columns["signup"]["min"], columns["signup"]["max"]) == ("2024-01-01", "2024-01-28")
    assert columns["plan"]["categories"] == ["basic", "pro", "team"]
    assert abs(sum(columns["plan"]["weights"]) - 1) < 1e-6
    assert columns["email"] == {
        "name": "email", "type": "string", "arrow_type": "string", "null_share": 0.0,
        "free_text": True, "length": [8, 10],
    }  # fmt: skip
    assert columns["score"]["type"] == "integer"  # few values, but numbers keep their range


def test_a_profile_holds_no_rows_and_no_unique_values(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("name,city\nAda Lovelace,London\nAlan Turing,London\nGrace Hopper,NYC\n")
    result = profile(path)
    text = json.dumps(result)
    for name in ("Ada Lovelace", "Alan Turing", "Grace Hopper"):
        assert name not in text
    # 2 distinct cities in 3 rows do not repeat enough to be a category set either.
    assert by_name(result)["city"]["free_text"] is True and "London" not in text


def test_many_distinct_strings_are_free_text(tmp_path, monkeypatch):
    monkeypatch.setattr(profile_module, "MAX_CATEGORIES", 5)
    path = tmp_path / "codes.csv"
    path.write_text("code\n" + "".join(f"c{i % 6}\n" for i in range(60)))
    assert by_name(profile(path))["code"]["free_text"] is True
    path.write_text("code\n" + "".join(f"c{i % 5}\n" for i in range(60)))
    assert by_name(profile(path))["code"]["categories"] == ["c0", "c1", "c2", "c3", "c4"]


def test_max_rows_limits_the_sample_not_the_types(tmp_path):
    path = tmp_path / "late.csv"
    path.write_text("x\n" + "".join(f"{i}\n" for i in range(100)) + "2.5\n")
    result = profile(path, max_rows=10)
    assert (result["rows"], result["profiled_rows"]) == (101, 10)
    assert by_name(result)["x"] | {"decimals": None} == {
        "name": "x", "type": "number", "arrow_type": "double", "null_share": 0.0,
        "min": 0.0, "max": 9.0, "decimals": None,
    }  # fmt: skip


def test_a_parquet_profile_keeps_the_exact_arrow_types(tmp_path):
    table = pa.table(
        {
            "n": pa.array([1, 5, None, 3], pa.int16()),
            "at": pa.array([0, 10**6, 2 * 10**6, None], pa.timestamp("us", tz="UTC")),
            "plan": pa.array(["a", "b", "a", "b"]).dictionary_encode(),
            "tags": [[1], [], None, [2]],
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    result = profile(path)
    assert json.loads(json.dumps(result)) == result
    assert result["delimiter"] is None
    columns = by_name(result)
    assert (columns["n"]["arrow_type"], columns["n"]["min"], columns["n"]["max"]) == (
        "int16", 1, 5
    )  # fmt: skip
    assert columns["n"]["null_share"] == 0.25
    assert columns["at"]["min"] == "1970-01-01T00:00:00+00:00"
    assert columns["at"]["max"] == "1970-01-01T00:00:02+00:00"
    assert columns["plan"]["categories"] == ["a", "b"]
    assert columns["tags"]["unsupported"] is True
    assert (
        schema_from_text(result["arrow_schema"]).field("plan").type
        == table.schema.field("plan").type
    )
