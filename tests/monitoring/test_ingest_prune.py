"""The daily prune: batches past the retention go, files and rows; recent ones stay; a file no
row names in an old window folder goes too."""

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from apps.monitoring import store
from apps.monitoring.ingest import Batch
from apps.monitoring.models import LabelBatch, ObservationBatch
from apps.monitoring.services.ingest import labels_record, observations_prune, observations_record
from apps.monitoring.tasks import prune_observations_task
from tests.monitoring import ingest_fixtures

pytestmark = pytest.mark.django_db
served = ingest_fixtures.served


def batch(at):
    ts = pa.array([at, at + timedelta(seconds=1)], pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "request_id": ["a", "b"],
            "ts": ts,
            "model_version_id": pa.array([None, None], pa.int64()),
            "prediction": [1.0, 0.0],
            "latency_ms": [1.0, 2.0],
        }
    )
    return Batch(table=table, model_version_id=None, first_at=at, last_at=at + timedelta(seconds=1))


def test_prune_removes_old_files_and_rows(served, settings):
    settings.OBSERVATION_RETENTION_DAYS = 7
    now = datetime.now(UTC)
    old = observations_record(environment=served.environment, batch=batch(now - timedelta(days=9)))
    new = observations_record(environment=served.environment, batch=batch(now - timedelta(hours=1)))
    labels = pa.table({"request_id": ["a"], "label": [1.0], "labelled_at": [now]})
    old_labels = labels_record(
        environment=served.environment, table=labels, at=now - timedelta(days=8)
    )
    labels_record(environment=served.environment, table=labels, at=now)
    orphan_dir = store.path_of(old.path).parent
    orphan = orphan_dir / "crashed-between-file-and-row.parquet"
    orphan.write_bytes(b"x")

    counts = observations_prune(now=now)

    assert counts == {"observation_batches": 1, "label_batches": 1, "orphan_files": 1}
    assert list(ObservationBatch.objects.values_list("pk", flat=True)) == [new.pk]
    assert LabelBatch.objects.count() == 1
    for gone in (old.path, old_labels.path):
        assert not store.path_of(gone).exists()
    assert not orphan_dir.exists()  # emptied, removed
    assert store.path_of(new.path).exists()
    # The beat task runs the same (nothing left to do).
    assert prune_observations_task() == {
        "observation_batches": 0,
        "label_batches": 0,
        "orphan_files": 0,
    }


def test_prune_is_on_the_beat_schedule(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["monitoring.prune_observations"]
    assert entry["schedule"] == timedelta(days=1)
