"""The example service's telemetry client against the real API on a live server: what it
sends is stored; a batch the control plane refuses is dropped and counted, not retried."""

import importlib.util
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db.models import Sum

from apps.monitoring import store
from apps.monitoring.models import ObservationBatch
from tests.monitoring import ingest_fixtures

pytestmark = pytest.mark.django_db(transaction=True)
served = ingest_fixtures.served

CLIENT = Path(__file__).resolve().parents[2] / "examples/churn-model/model/telemetry.py"


def load_client():
    spec = importlib.util.spec_from_file_location("churn_telemetry", CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Telemetry


def test_the_example_client_posts_to_the_real_api(served, live_server):
    Telemetry = load_client()
    url = f"{live_server.url}/api/v1/environments/{served.environment.pk}/observations/"
    telemetry = Telemetry(
        url, served.raw_token, served.model_version.pk, batch_rows=20, flush_seconds=0.1
    ).start()
    start = time.time()
    for i in range(50):
        telemetry.record(
            request_id=f"req-{i}",
            features={"f0": i / 10, "f1": i, "plan": "pro"},
            prediction=i % 2,
            latency_ms=1.5,
            timestamp=start + i / 1000,
        )
    telemetry.close(timeout=10)
    assert (telemetry.sent, telemetry.dropped) == (50, 0)
    assert ObservationBatch.objects.aggregate(n=Sum("rows"))["n"] == 50
    at = datetime.fromtimestamp(start, tz=UTC)
    table = store.read_window(
        environment_id=served.environment.pk,
        start=at - timedelta(seconds=1),
        end=at + timedelta(minutes=1),
    )
    assert sorted(table.column("request_id").to_pylist()) == sorted(f"req-{i}" for i in range(50))
    assert set(table.column("model_version_id").to_pylist()) == {served.model_version.pk}


def test_a_refused_batch_is_dropped_and_counted(served, live_server):
    Telemetry = load_client()
    url = f"{live_server.url}/api/v1/environments/{served.environment.pk}/observations/"
    telemetry = Telemetry(url, served.raw_token, served.model_version.pk, flush_seconds=0.1)
    telemetry.start()
    telemetry.record(request_id="a", features={"f0": 1.0, "not_a_feature": 2})
    telemetry.close(timeout=10)
    assert telemetry.dropped == 1 and telemetry.sent == 0
    assert not ObservationBatch.objects.exists()
