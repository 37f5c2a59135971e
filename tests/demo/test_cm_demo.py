"""The demo's continuous-monitoring story on the real thing: setup_demo on the test database,
a Celery worker running the example's ``features`` and ``train`` pipelines, the process
deployer serving the model (its telemetry posting to the live server), and the demo's own
commands: ``demo_traffic`` sends production requests and their outcomes, ``demo_drift``
shifts four of the six features.

The checks run here, in the test's process, on windows the test chooses (the worker and beat
path is tests/monitoring/test_closed_loop_e2e.py): traffic as the demo sends it → no drift;
after ``demo_drift`` → dataset drift on the shifted features, and, labels joined by request
id, a retrain of the demo's ``train`` pipeline started by monitoring."""

import io
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Sum

from apps.monitoring import checks
from apps.monitoring.choices import CheckStatus
from apps.monitoring.models import ObservationBatch, RetrainRequest
from apps.pipelines import schedules as pipeline_schedules
from apps.pipelines import services as pipeline_services
from apps.pipelines.choices import Trigger
from apps.pipelines.models import Schedule
from apps.releases.choices import PromotionStatus
from apps.releases.deployers.process import ProcessDeployer
from apps.releases.models import Promotion, Release
from apps.releases.services import promotion_approve
from tests.monitoring.closed_loop import serve_on_free_ports
from tests.pipelines.worker import WorkerProcess, wait_for

from .test_ct_demo import deployed, succeeded

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def traffic(seconds: float, rate: float = 40, seed: int = 1) -> str:
    out = io.StringIO()
    call_command(
        "demo_traffic",
        "--seconds",
        str(seconds),
        "--rate",
        str(rate),
        "--seed",
        str(seed),
        stdout=out,
    )
    return out.getvalue()


def observed(environment, since: datetime) -> int:
    rows = ObservationBatch.objects.filter(environment=environment, first_at__gte=since)
    return rows.aggregate(n=Sum("rows"))["n"] or 0


def test_demo_traffic_is_observed_and_demo_drift_is_detected(setup_demo, live_server, settings):
    settings.SITE_URL = live_server.url  # where demo_traffic posts the labels
    demo = setup_demo()
    project = demo.project
    # The first (push) run is the newcomer test's; the CT path below is the demo's own.
    push = pipeline_services.run_prepare(run_id=project.runs.get().pk)
    pipeline_services.run_cancel(run=push, actor="test", reason="Not this one.")
    serve_on_free_ports(project)
    lead = get_user_model().objects.get(username="lead")
    schedule = Schedule.objects.get(project=project, name="refresh-features")
    worker = WorkerProcess(
        concurrency=2, extra_env={"CONTROLPLANE_SITE_URL": live_server.url}
    ).start()
    try:
        # What the demo's schedule does: features → train → release → dev, staging; the lead
        # approves production.
        succeeded(pipeline_schedules.schedule_fire(schedule_id=schedule.pk))
        train = wait_for(lambda: project.runs.filter(pipeline="train").first(), 60)
        release = wait_for(
            lambda: Release.objects.filter(pipeline_run=succeeded(train)).first(), 60
        )
        for name in ("dev", "staging"):
            deployed(release, name)
        promotion = wait_for(
            lambda: Promotion.objects.filter(
                release=release, status=PromotionStatus.PENDING
            ).first(),
            60,
        )
        promotion_approve(promotion=promotion, user=lead, comment="Go.")
        deployed(release, "production")
        production = project.environments.get(name="production")

        # Calm traffic: observed (the service's telemetry), no drift.
        calm = datetime.now(tz=UTC)
        said = traffic(8)
        assert "sending to production" in said and " 0 failed" in said, said
        wait_for(lambda: observed(production, calm) >= 250, 30)
        drift_at = datetime.now(tz=UTC)
        ok = checks.run_check(environment_id=production.pk, window_start=calm, window_end=drift_at)
        assert ok.status == CheckStatus.OK, (ok.status, ok.error, ok.drifted_columns)
        assert ok.rows >= 250 and ok.model_version == release.model_version
        assert not RetrainRequest.objects.exists()

        # demo_drift: the next requests have f0–f3 shifted by one standard deviation.
        out = io.StringIO()
        call_command("demo_drift", "1.0", stdout=out)
        assert "shifted by 1.0 std" in out.getvalue()
        traffic(8, seed=2)
        wait_for(lambda: observed(production, drift_at) >= 250, 30)
        drifted = checks.run_check(
            environment_id=production.pk, window_start=drift_at, window_end=datetime.now(tz=UTC)
        )
        assert drifted.status == CheckStatus.DRIFT, (drifted.status, drifted.error)
        assert set(drifted.drifted_columns) == {"f0", "f1", "f2", "f3"}
        # The outcomes demo_traffic posted joined their requests: a retrain started.
        request = RetrainRequest.objects.get(drift_check=drifted)
        assert request.skipped_reason == "", request.skipped_reason
        assert request.evidence["dataset"]["rows_added"] >= 250
        assert (request.run.trigger, request.run.pipeline) == (Trigger.MONITOR, "train")
        call_command("demo_drift", "off", stdout=io.StringIO())
    finally:
        worker.stop()
        for env in ("dev", "staging", "production"):
            ProcessDeployer().stop(project=project.slug, environment=env)
