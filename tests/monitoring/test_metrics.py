"""/metrics and the service discovery: values move when states change, the guard holds, and
a scrape reads only the rows in non-terminal states whatever the table sizes."""

import json
import os
import subprocess
import sys
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from apps.monitoring import metrics
from apps.monitoring.choices import AlertSource, AlertStatus, Severity
from apps.monitoring.models import Alert
from apps.pipelines.choices import JobStatus, RunStatus
from apps.pipelines.models import PipelineRun
from apps.pipelines.services import job_transition, run_transition
from apps.releases.choices import DeploymentStatus, PromotionStatus
from apps.releases.deployers.health import free_port
from apps.releases.services.promotions import promotion_reject
from apps.releases.services.transitions import deployment_transition
from tests.factories import (
    DeploymentFactory,
    EnvironmentFactory,
    JobFactory,
    PromotionFactory,
    ReleaseFactory,
    RunFactory,
)

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests"  # noqa: S105
ROOT = Path(__file__).resolve().parents[2]


def value(text: str, name: str, **labels) -> float:
    """The sample ``name{labels}`` in an exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_TOKEN = TOKEN

    def get(path: str = "/metrics") -> str:
        response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        return response.content.decode()

    return get


# --- the guard -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/api/v1/monitoring/targets/"])
def test_neither_token_nor_allow_list_configured_refuses_everyone(client, settings, path):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW = []
    assert client.get(path).status_code == 403
    assert client.get(path, HTTP_AUTHORIZATION="Bearer ").status_code == 403


@pytest.mark.parametrize("path", ["/metrics", "/api/v1/monitoring/targets/"])
def test_the_bearer_token_opens_and_a_wrong_one_does_not(client, settings, path):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOW = []
    assert client.get(path, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.get(path, HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 403
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", ["/metrics", "/api/v1/monitoring/targets/"])
def test_the_allow_list_takes_the_peer_address_never_a_forwarded_header(client, settings, path):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW = ["10.0.0.0/8", "192.0.2.7"]
    assert client.get(path, REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get(path, REMOTE_ADDR="192.0.2.7").status_code == 200
    assert client.get(path, REMOTE_ADDR="192.0.2.8").status_code == 403
    spoofed = client.get(path, REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.1.2.3")
    assert spoofed.status_code == 403


def test_a_wrong_token_is_refused_even_from_an_allowed_address(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOW = ["127.0.0.1"]
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    wrong = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 403


# --- values move with the states -------------------------------------------------------------


def test_runs_and_jobs_finishing_move_the_counters_and_histograms(
    scrape, django_capture_on_commit_callbacks
):
    run = RunFactory(status=RunStatus.RUNNING, started_at=timezone.now() - timedelta(seconds=90))
    job = JobFactory(
        run=run,
        kind="train",
        status=JobStatus.RUNNING,
        started_at=timezone.now() - timedelta(seconds=40),
    )
    slug = run.project.slug
    before = scrape()
    assert value(before, "controlplane_runs", status="running") >= 1
    assert value(before, "controlplane_jobs", status="running", kind="train") >= 1

    with django_capture_on_commit_callbacks(execute=True):
        job_transition(job=job, to=JobStatus.FAILED, actor="test")
    with django_capture_on_commit_callbacks(execute=True):
        run_transition(run=run, to=RunStatus.FAILED, actor="test")

    after = scrape()
    finished = "controlplane_jobs_finished_total"
    assert value(after, finished, kind="train", status="failed") == (
        value(before, finished, kind="train", status="failed") + 1
    )
    runs = "controlplane_runs_finished_total"
    assert value(after, runs, project=slug, status="failed") == 1
    # 90 s lands in the (60, 120] bucket: not in le=60, in le=120.
    bucket = "controlplane_pipeline_duration_seconds_bucket"
    for le, added in (("60.0", 0), ("120.0", 1), ("+Inf", 1)):
        assert value(after, bucket, status="failed", le=le) == (
            value(before, bucket, status="failed", le=le) + added
        )
    jobs_count = "controlplane_job_duration_seconds_count"
    assert value(after, jobs_count, kind="train", status="failed") == (
        value(before, jobs_count, kind="train", status="failed") + 1
    )
    assert value(after, "controlplane_runs", status="running") == (
        value(before, "controlplane_runs", status="running") - 1
    )


def test_queue_depth_and_age_per_queue(scrape):
    run = RunFactory(status=RunStatus.RUNNING)
    JobFactory(run=run, kind="test", status=JobStatus.QUEUED, queued_at=timezone.now())
    JobFactory(
        run=run,
        kind="script",
        status=JobStatus.QUEUED,
        queued_at=timezone.now() - timedelta(seconds=300),
    )
    JobFactory(run=run, kind="build", status=JobStatus.QUEUED, queued_at=timezone.now())
    JobFactory(run=run, kind="build", status=JobStatus.SUCCEEDED)
    text = scrape()
    # test and script jobs share the test queue.
    assert value(text, "controlplane_queue_depth", queue="test") == 2
    assert value(text, "controlplane_queue_depth", queue="build") == 1
    assert value(text, "controlplane_queue_depth", queue="train") == 0
    assert 300 <= value(text, "controlplane_queue_oldest_age_seconds", queue="test") < 400
    assert value(text, "controlplane_queue_oldest_age_seconds", queue="build") < 60


def test_deployments_and_promotions(scrape, admin_user, django_capture_on_commit_callbacks):
    deployment = DeploymentFactory(
        status=DeploymentStatus.RUNNING, started_at=timezone.now() - timedelta(seconds=20)
    )
    env = deployment.environment
    labels = {"project": env.project.slug, "environment": env.name}
    before = scrape()
    assert value(before, "controlplane_deployments_active", status="running") >= 1
    count = "controlplane_deployment_duration_seconds_count"
    with django_capture_on_commit_callbacks(execute=True):
        deployment_transition(deployment=deployment, to=DeploymentStatus.SUCCEEDED, actor="test")
    after = scrape()
    assert value(after, "controlplane_deployments_total", status="succeeded", **labels) == 1
    assert value(after, count, environment=env.name, status="succeeded") == (
        value(before, count, environment=env.name, status="succeeded") + 1
    )

    promotion = PromotionFactory(
        release=ReleaseFactory(project=env.project),
        environment=EnvironmentFactory(project=env.project, name="production"),
    )
    waiting = {"project": env.project.slug, "environment": "production"}
    text = scrape()
    assert value(text, "controlplane_promotions_waiting", **waiting) == 1
    assert value(text, "controlplane_promotion_waiting_seconds", **waiting) >= 0
    with django_capture_on_commit_callbacks(execute=True):
        promotion_reject(promotion=promotion, user=admin_user, comment="not this week")
    text = scrape()
    assert value(text, "controlplane_promotions_waiting", **waiting) == 0
    assert value(text, "controlplane_promotions_total", status="rejected", **waiting) == 1
    assert PromotionStatus.REJECTED == "rejected"


def test_webhook_deliveries_count_by_result(client, scrape, django_capture_on_commit_callbacks):
    name = "controlplane_webhook_deliveries_total"
    before = value(scrape(), name, provider="generic", status="rejected")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/hooks/generic/no-such-project/", data=b"{}", content_type="application/json"
        )
    assert response.status_code == 403
    assert value(scrape(), name, provider="generic", status="rejected") == before + 1


def test_requests_are_counted_by_url_name_and_code(client, scrape):
    name = "controlplane_http_requests_total"
    before = value(scrape(), name, method="GET", view="healthz", code="200")
    client.get("/healthz")
    client.get("/healthz")
    text = scrape()
    assert value(text, name, method="GET", view="healthz", code="200") == before + 2
    assert value(text, "controlplane_http_request_duration_seconds_count", view="healthz") > 0


def test_alerts_firing_by_severity(scrape, project):
    for i, severity in enumerate([Severity.CRITICAL, Severity.CRITICAL, Severity.WARNING]):
        Alert.objects.create(
            project=project,
            source=AlertSource.CONTROLPLANE,
            rule="service_down",
            fingerprint=f"fp{i}",
            severity=severity,
        )
    Alert.objects.create(
        source=AlertSource.CONTROLPLANE,
        rule="service_down",
        fingerprint="old",
        severity=Severity.CRITICAL,
        status=AlertStatus.RESOLVED,
    )
    text = scrape()
    assert value(text, "controlplane_alerts_firing", severity="critical") == 2
    assert value(text, "controlplane_alerts_firing", severity="warning") == 1
    assert value(text, "controlplane_alerts_firing", severity="info") == 0


def test_drift_gauges_show_what_the_check_set(scrape):
    metrics.drift_scores_set(
        project="churn",
        environment="production",
        model_version=7,
        scores=[
            metrics.FeatureScore("f0", "ks", 0.001, True),
            metrics.FeatureScore("plan", "psi", 0.05, False),
        ],
        dataset_drift=True,
        drift_share=0.5,
        performance={"f1": 0.81},
    )
    text = scrape()
    labels = {"project": "churn", "environment": "production", "model_version": "7"}
    assert value(text, "controlplane_drift_score", feature="f0", test="ks", **labels) == 0.001
    assert value(text, "controlplane_column_drift", feature="f0", **labels) == 1
    assert value(text, "controlplane_column_drift", feature="plan", **labels) == 0
    assert value(text, "controlplane_dataset_drift", project="churn") == 1
    assert value(text, "controlplane_drift_share", project="churn") == 0.5
    assert value(text, "controlplane_model_performance", metric="f1", **labels) == 0.81
    metrics.drift_scores_clear(
        project="churn", environment="production", model_version=7, features=[("f0", "ks")]
    )
    cleared = value(scrape(), "controlplane_drift_score", feature="f0", **labels)
    assert cleared != cleared  # NaN


# --- cheap at any size -----------------------------------------------------------------------


def test_a_scrape_reads_only_non_terminal_rows(client, settings):
    """Whatever the tables hold, the scrape's queries are a fixed handful, each filtered on a
    non-terminal status — never a count over all runs, jobs or deployments."""
    settings.METRICS_TOKEN = TOKEN
    project_runs = RunFactory.create_batch(30, status=RunStatus.SUCCEEDED)
    for run in project_runs[:10]:
        JobFactory(run=run, status=JobStatus.SUCCEEDED)
    DeploymentFactory.create_batch(3, status=DeploymentStatus.SUCCEEDED)

    def queries() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        return [q["sql"] for q in captured.captured_queries]

    small = queries()
    RunFactory.create_batch(200, status=RunStatus.FAILED)
    big = queries()
    assert len(small) == len(big) <= 6, big
    for sql in big:
        where = sql.split("WHERE", 1)[1] if "WHERE" in sql else ""
        assert '"status"' in where, f"a scrape query without a status filter: {sql}"
        for final in ("'succeeded'", "'failed'", "'canceled'", "'rolled_back'", "'resolved'"):
            assert final not in where, f"a scrape query reads finished rows: {sql}"
    assert PipelineRun.objects.count() >= 230


# --- service discovery -----------------------------------------------------------------------


def test_targets_list_each_environments_serving_deployment(scrape):
    release = ReleaseFactory()
    production = EnvironmentFactory(project=release.project, name="production", order=2)
    staging = EnvironmentFactory(project=release.project, name="staging", order=1)
    EnvironmentFactory(project=release.project, name="dev", order=0)  # never deployed
    now = timezone.now()
    DeploymentFactory(
        release=release,
        environment=production,
        status=DeploymentStatus.SUCCEEDED,
        url="http://127.0.0.1:18080",
        deployer="process",
        finished_at=now - timedelta(hours=1),
    )
    newer = ReleaseFactory(project=release.project)
    # A newer failed deployment does not replace what serves.
    DeploymentFactory(
        release=newer,
        environment=production,
        status=DeploymentStatus.FAILED,
        url="http://127.0.0.1:18081",
        finished_at=now,
    )
    DeploymentFactory(
        release=newer,
        environment=staging,
        status=DeploymentStatus.SUCCEEDED,
        url="https://staging.example.com/churn/",
        deployer="docker",
        finished_at=now,
    )
    groups = json.loads(scrape("/api/v1/monitoring/targets/"))
    assert groups == [
        {
            "targets": ["staging.example.com"],
            "labels": {
                "project": release.project.slug,
                "environment": "staging",
                "release": newer.version,
                "model_version": "",
                "deployer": "docker",
                "__scheme__": "https",
                "__metrics_path__": "/churn/metrics",
            },
        },
        {
            "targets": ["127.0.0.1:18080"],
            "labels": {
                "project": release.project.slug,
                "environment": "production",
                "release": release.version,
                "model_version": "",
                "deployer": "process",
                "__scheme__": "http",
                "__metrics_path__": "/metrics",
            },
        },
    ]


# --- multiprocess mode -----------------------------------------------------------------------

_CHILD = """
import sys
from datetime import datetime, timezone
from apps.monitoring import metrics
metrics.WEBHOOK_DELIVERIES.labels("github", "accepted").inc(int(sys.argv[1]))
metrics.drift_scores_set(project="p", environment="e", model_version=1,
    scores=[metrics.FeatureScore("f0", "ks", float(sys.argv[2]), False)],
    dataset_drift=False, drift_share=0.0, at=datetime.now(timezone.utc))
"""


def test_counters_of_several_processes_add_up_and_gauges_keep_the_latest(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for amount, score in ((2, 0.3), (5, 0.9)):
        subprocess.run(  # noqa: S603
            [sys.executable, "-c", _CHILD, str(amount), str(score)],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=60,
        )
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    name = "controlplane_webhook_deliveries_total"
    assert value(text, name, provider="github", status="accepted") == 7
    assert value(text, "controlplane_drift_score", feature="f0") == 0.9


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_records_its_tasks_and_jobs_and_serves_them_itself(tmp_path):
    from tests.pipelines.worker import WorkerProcess, wait_for

    port = free_port()
    worker = WorkerProcess(
        extra_env={
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
            "CONTROLPLANE_WORKER_METRICS_PORT": str(port),
        }
    ).start()
    try:
        # Starting it ran core.worker_ping once (WorkerProcess waits for its answer).
        def served() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:  # noqa: S310
                return r.read().decode()

        name = "controlplane_worker_tasks_total"
        text = wait_for(
            lambda: (
                (t := served())
                and value(t, name, task="core.worker_ping", state="succeeded") >= 1
                and t
            ),
            30,
        )
        assert value(text, "controlplane_worker_task_duration_seconds_count") >= 1
        # The same counts are in the shared folder, where the web's /metrics reads them.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(tmp_path))
        from prometheus_client import generate_latest

        shared = generate_latest(registry).decode()
        assert value(shared, name, task="core.worker_ping", state="succeeded") >= 1
    finally:
        worker.stop()
