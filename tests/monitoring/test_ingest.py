"""Posting observations and labels through the API: the shapes, validation that refuses a
whole batch naming row and column, limits, and what is stored (read back from the store)."""

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from apps.monitoring import store
from apps.monitoring.models import LabelBatch, ObservationBatch
from tests.factories import EnvironmentFactory
from tests.monitoring import ingest_fixtures

pytestmark = pytest.mark.django_db
served = ingest_fixtures.served

NOW = datetime.now(UTC).replace(microsecond=0)


def rows(n=5, start=NOW, **extra):
    out = []
    for i in range(n):
        row = {
            "request_id": f"r{i}",
            "timestamp": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            "prediction": i % 2,
            "latency_ms": 2.5,
            "f0": i / 10,
            "f1": i,
            "plan": ["basic", "pro"][i % 2],
        }
        row.update(extra)
        out.append(row)
    return out


def client_for(raw):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def post(served, body, path="observations", raw=None, content_type="application/json", **kw):
    client = client_for(raw or served.raw_token)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        f"/api/v1/environments/{served.environment.pk}/{path}/{kw.pop('query', '')}",
        data=data,
        content_type=content_type,
        **kw,
    )


def stored_files(served):
    root = Path(store._root()) / str(served.environment.pk)
    return sorted(p for p in root.rglob("*.parquet") if "/reference/" not in str(p))


def test_rows_are_stored_and_read_back_per_window(served):
    response = post(served, {"model_version": served.model_version.pk, "rows": rows(5)})
    assert response.status_code == 201, response.content
    assert response.json()["rows"] == 5
    batch = ObservationBatch.objects.get(environment=served.environment)
    assert batch.rows == 5 and batch.model_version_id == served.model_version.pk
    assert batch.first_at == NOW and batch.last_at == NOW + timedelta(seconds=4)
    table = store.read_window(
        environment_id=served.environment.pk, start=NOW, end=NOW + timedelta(seconds=3)
    )
    assert table.num_rows == 3
    assert table.column("request_id").to_pylist() == ["r0", "r1", "r2"]
    assert table.column("f0").to_pylist() == [0.0, 0.1, 0.2]
    assert table.column("plan").to_pylist() == ["basic", "pro", "basic"]
    assert str(table.schema.field("f1").type) == "double"  # numeric in the reference
    assert table.column("model_version_id").to_pylist() == [served.model_version.pk] * 3
    assert table.column("prediction").to_pylist() == [0.0, 1.0, 0.0]


def test_columnar_shape_is_the_same_batch(served):
    r = rows(4)
    columns = {key: [row[key] for row in r] for key in r[0]}
    response = post(served, {"model_version": served.model_version.pk, "columns": columns})
    assert response.status_code == 201, response.content
    table = store.read_files([ObservationBatch.objects.get().path])
    assert table.column("f1").to_pylist() == [0.0, 1.0, 2.0, 3.0]
    assert table.column("ts").to_pylist()[1] == NOW + timedelta(seconds=1)


def test_gzipped_ndjson_with_the_model_version_in_the_query(served):
    body = gzip.compress(b"\n".join(json.dumps(r).encode() for r in rows(6)))
    response = post(
        served,
        body,
        content_type="application/x-ndjson",
        query=f"?model_version={served.model_version.pk}",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 201, response.content
    table = store.read_files([ObservationBatch.objects.get().path])
    assert table.num_rows == 6
    assert table.column("plan").to_pylist()[:2] == ["basic", "pro"]
    assert table.column("model_version_id").to_pylist() == [served.model_version.pk] * 6


def test_epoch_timestamps_and_integer_categories_are_accepted(served):
    r = rows(3)
    for i, row in enumerate(r):
        row["timestamp"] = NOW.timestamp() + i
        row["plan"] = 7
    body = b"\n".join(json.dumps(x).encode() for x in r)
    response = post(
        served,
        body,
        content_type="application/x-ndjson",
        query=f"?model_version={served.model_version.pk}",
    )
    assert response.status_code == 201, response.content
    table = store.read_files([ObservationBatch.objects.get().path])
    assert table.column("ts").to_pylist()[2] == NOW + timedelta(seconds=2)
    assert table.column("plan").to_pylist() == ["7", "7", "7"]


def _refused(served, response, row, column, words):
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["row"] == row and body["column"] == column, body
    assert words in body["detail"]
    assert not ObservationBatch.objects.exists()
    assert stored_files(served) == []


def test_unknown_column_refuses_the_whole_batch(served):
    r = rows(5)
    r[3]["f9"] = 1.0
    response = post(served, {"model_version": served.model_version.pk, "rows": r})
    _refused(served, response, 3, "f9", "unknown column")


def test_wrong_type_names_row_and_column(served):
    r = rows(5)
    r[2]["f0"] = "high"
    response = post(served, {"model_version": served.model_version.pk, "rows": r})
    _refused(served, response, 2, "f0", "expected a number")


def test_wrong_type_in_ndjson_names_the_line(served):
    r = rows(5)
    r[4]["plan"] = {"nested": True}
    body = b"\n".join(json.dumps(x).encode() for x in r)
    response = post(
        served,
        body,
        content_type="application/x-ndjson",
        query=f"?model_version={served.model_version.pk}",
    )
    _refused(served, response, 4, "plan", "expected a string")


@pytest.mark.parametrize("column", ["request_id", "timestamp"])
def test_missing_request_id_or_timestamp(served, column):
    r = rows(5)
    r[1][column] = None
    response = post(served, {"model_version": served.model_version.pk, "rows": r})
    _refused(served, response, 1, column, "missing")
    r = rows(5)
    for row in r:
        del row[column]
    response = post(served, {"model_version": served.model_version.pk, "rows": r})
    _refused(served, response, 0, column, "missing")


def test_bad_timestamp_text(served):
    r = rows(3)
    r[2]["timestamp"] = "yesterday"
    response = post(served, {"model_version": served.model_version.pk, "rows": r})
    _refused(served, response, 2, "timestamp", "ISO 8601")


def test_model_version_that_never_served_here(served, project):
    from apps.training.models import ModelVersion

    other = ModelVersion.objects.create(project=project, name="churn", version=99)
    response = post(served, {"model_version": other.pk, "rows": rows(2)})
    assert response.status_code == 400
    assert response.json()["column"] == "model_version"
    assert "never served production" in response.json()["detail"]
    assert not ObservationBatch.objects.exists()


def test_body_limits(served, settings):
    settings.INGEST_MAX_BODY_BYTES = 2000
    big = {"model_version": served.model_version.pk, "rows": rows(40)}
    response = post(served, big)
    assert response.status_code == 413
    settings.INGEST_MAX_DECODED_BYTES = 4000
    bomb = gzip.compress(json.dumps(big).encode() + b" " * 1_000_000)
    assert len(bomb) < 2000
    response = post(served, bomb, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    response = post(served, b"\x1f\x8bnot gzip", HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 400
    assert not ObservationBatch.objects.exists()


def test_labels_join_the_observations(served):
    post(served, {"model_version": served.model_version.pk, "rows": rows(4)})
    response = post(
        served,
        {"rows": [{"request_id": "r1", "label": 1}, {"request_id": "r3", "label": 0}]},
        path="labels",
    )
    assert response.status_code == 201, response.content
    assert LabelBatch.objects.get().rows == 2
    table = store.read_window(
        environment_id=served.environment.pk,
        start=NOW,
        end=NOW + timedelta(minutes=1),
        with_labels=True,
    )
    labels = dict(
        zip(table.column("request_id").to_pylist(), table.column("label").to_pylist(), strict=True)
    )
    assert labels == {"r0": None, "r1": 1.0, "r2": None, "r3": 0.0}


def test_labels_are_validated_too(served):
    response = post(served, {"rows": [{"request_id": "r1"}]}, path="labels")
    assert response.status_code == 400 and response.json()["column"] == "label"
    response = post(served, {"rows": [{"request_id": "r1", "label": 1, "score": 3}]}, path="labels")
    assert response.status_code == 400 and response.json()["column"] == "score"
    assert not LabelBatch.objects.exists()


# --- who may post ----------------------------------------------------------------------------


def test_no_wrong_or_revoked_token_is_403(served, admin_user):
    from apps.monitoring.services.ingest import ingest_token_revoke

    body = {"model_version": served.model_version.pk, "rows": rows(1)}
    anonymous = APIClient().post(
        f"/api/v1/environments/{served.environment.pk}/observations/", body, format="json"
    )
    assert anonymous.status_code == 403
    assert post(served, body, raw="cpi_not-a-token").status_code == 403
    ingest_token_revoke(token=served.token, actor=admin_user)
    assert post(served, body).status_code == 403
    assert not ObservationBatch.objects.exists()


def test_a_token_reaches_only_its_own_environment(served, project):
    other = EnvironmentFactory(project=project, name="elsewhere")
    client = client_for(served.raw_token)
    body = {"model_version": served.model_version.pk, "rows": rows(1)}
    response = client.post(f"/api/v1/environments/{other.pk}/observations/", body, format="json")
    assert response.status_code == 403
    response = client.post("/api/v1/environments/999999/observations/", body, format="json")
    assert response.status_code == 403
    for url in ("/api/v1/projects/", f"/api/v1/environments/{served.environment.pk}/"):
        assert client.get(url).status_code == 403
    assert (
        client.post("/api/v1/ingest-tokens/", {"environment": other.pk, "name": "x"}).status_code
        == 403
    )


def test_people_post_with_the_developer_role(served, api, member):
    body = {"model_version": served.model_version.pk, "rows": rows(2)}
    url = f"/api/v1/environments/{served.environment.pk}/observations/"
    assert api(member("viewer")).post(url, body, format="json").status_code == 403
    assert api(member("developer")).post(url, body, format="json").status_code == 201


def test_api_tokens_still_get_401_elsewhere(served):
    assert APIClient().get("/api/v1/projects/").status_code in (401, 403)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer cpt_nonsense")
    assert bad.get("/api/v1/projects/").status_code == 401


def test_a_timestamp_far_in_the_future(served):
    r = rows(3)
    r[1]["timestamp"] = (NOW + timedelta(days=2)).isoformat()
    response = post(served, {"model_version": served.model_version.pk, "rows": r})
    _refused(served, response, 1, "timestamp", "in the future")


def test_without_a_usable_reference_the_batch_is_kept(served, project, tmp_path):
    from apps.projects.models import Environment

    dev = Environment.objects.get(project=project, name="dev")
    spec = {"raw": {"monitor": {"features": ["f0", "not_in_the_data"]}}}
    mv, _dv, _release = ingest_fixtures.serve(project, dev, tmp_path, spec=spec)
    from apps.monitoring.services.ingest import ingest_token_create

    _token, raw = ingest_token_create(environment=dev, name="svc", actor="test")
    body = {"model_version": mv.pk, "rows": rows(3, anything="x")}
    response = client_for(raw).post(
        f"/api/v1/environments/{dev.pk}/observations/", body, format="json"
    )
    assert response.status_code == 201, response.content
    table = store.read_files([ObservationBatch.objects.get(environment=dev).path])
    assert table.column("anything").to_pylist() == ["x", "x", "x"]  # kinds from the batch
    assert str(table.schema.field("f1").type) == "double"
