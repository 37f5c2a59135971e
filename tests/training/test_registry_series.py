"""Per-step series: the worker tails $CONTROLPLANE_METRICS_LOG with its heartbeats (whole
lines only, bad lines skipped and counted, a cap per job) and training stores the points; the
job page draws them, and a model version registered by the job owns them."""

import pytest

from apps.pipelines import services
from apps.pipelines.choices import RunStatus
from apps.pipelines.series import MetricsTail
from apps.pipelines.signals import job_metrics_logged
from apps.training.models import MetricPoint
from apps.training.services import model_version_register
from tests.pipelines.test_worker import finished, log_of, worker  # noqa: F401 - fixture


class Log:
    def __init__(self):
        self.lines = []

    def line(self, text):
        self.lines.append(text)


def test_the_tail_reads_whole_lines_skips_bad_ones_and_caps(tmp_path):
    got = []

    def receive(sender, job_id, points, **kw):
        got.extend(points)

    job_metrics_logged.connect(receive, dispatch_uid="test-tail")
    try:
        path = tmp_path / "metrics.jsonl"
        log = Log()
        tail = MetricsTail(job_id=1, path=path, log=log, max_points=4)
        assert tail.flush() == 0  # no file yet
        path.write_text(
            '{"key": "loss", "step": 1, "value": 0.9}\n'
            "not json\n"
            '{"key": "loss", "step": "x", "value": 1}\n'
            '{"key": "loss", "step": 2, "value": NaN}\n'
            '{"key": "loss", "step": 2, "value": 0.7}\n'
            '{"key": "loss", "step": 3, "val'  # still being written
        )
        assert tail.flush() == 2
        with open(path, "a") as fh:
            fh.write('ue": 0.5}\n{"key": "acc", "step": 3, "value": 0.8}\n')
            fh.write('{"key": "acc", "step": 4, "value": 0.9}\n{"key": "acc", "step": 5')
        assert tail.flush(final=True) == 2  # the cap: 4 in all
        assert [(p["key"], p["step"], p["value"]) for p in got] == [
            ("loss", 1, 0.9),
            ("loss", 2, 0.7),
            ("loss", 3, 0.5),
            ("acc", 3, 0.8),
        ]
        assert log.lines == [
            "metrics log: 4 point(s), 4 bad line(s) skipped, 1 over the cap of 4 dropped"
        ]
    finally:
        job_metrics_logged.disconnect(dispatch_uid="test-tail")


SCRIPT = """
for i in $(seq 1 30); do
  echo "{\\"key\\": \\"loss\\", \\"step\\": $i, \\"value\\": $((1000 / i))}" \\
    >> "$CONTROLPLANE_METRICS_LOG"
  sleep 0.05
done
echo 'garbage' >> "$CONTROLPLANE_METRICS_LOG"
echo '{"key": "f1", "step": 1, "value": 0.8}' >> "$CONTROLPLANE_METRICS_LOG"
"""


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_running_job_logs_a_series_that_its_model_version_owns(
    project,
    admin_user,
    worker,  # noqa: F811
    client,
):
    worker()
    run = services.run_create(
        project=project,
        actor=admin_user,
        jobs=[{"name": "train", "kind": "script", "script": [SCRIPT], "model": "m.bin"}],
    )
    run = finished(run)
    assert run.status == RunStatus.SUCCEEDED, [(j.name, j.error_message) for j in run.jobs.all()]
    job = run.jobs.get(name="train")
    points = MetricPoint.objects.filter(job=job)
    assert points.filter(key="loss").count() == 30
    assert list(points.filter(key="loss").values_list("step", flat=True)[:3]) == [1, 2, 3]
    assert points.get(key="f1").value == 0.8
    assert "metrics log: 31 point(s), 1 bad line(s) skipped" in log_of(run, "train")

    client.force_login(admin_user)
    page = client.get(f"/p/{project.slug}/runs/{run.number}/jobs/train/").content.decode()
    assert 'id="job-series"' in page and 'data-series="loss"' in page

    mv = model_version_register(
        project=project, run=run, job=job, name="churn", artifact_digest="sha256:s"
    )
    assert MetricPoint.objects.filter(model_version=mv).count() == 31
    version_page = client.get(mv.get_absolute_url()).content.decode()
    assert 'data-series="loss"' in version_page and 'data-series="f1"' in version_page
