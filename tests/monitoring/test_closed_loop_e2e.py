"""The CM loop closed, on the real thing: PostgreSQL, Redis, one Celery worker running beat
(``-B``), the control plane as a live server, the example model (examples/churn-model) served
by the process deployer in every environment and reporting its predictions itself, and a fake
Slack on 127.0.0.1 that the worker's slack-sdk client posts to.

The example's spec is used as it is but for ``monitor.every`` (10 s instead of 15 min, so that
the test waits seconds for a window to close); the worker's beat looks for due windows every
second and checks a window 2 s after it closes. The production champion is the example's
``dummy`` model (it always predicts the prior, f1 0), so the gate has something to beat:

1. a first train run (manual, ``model_type: dummy``) → release → dev, staging → a lead
   approves → production serves it;
2. traffic like the training data: the checks say "no drift", no alert, nothing in Slack;
3. four of six features shifted by one standard deviation: the next window drifts → the
   ``dataset_drift`` alert → its Slack message arrives → a train run with trigger MONITOR and
   the drift as its reason, on the training data plus the window's labelled rows;
4. the next drifted window, inside the cooldown, starts no second run (a RetrainRequest
   says why);
5. the retrained model passes the gate against the dummy → a release → dev and staging →
   a promotion to production waits for approval, its page showing the drift that asked for it.
"""

import time
from datetime import UTC, datetime

import pytest

from apps.demo.traffic import Population
from apps.monitoring.choices import AlertStatus, CheckStatus
from apps.monitoring.models import Alert, DriftCheck, RetrainRequest
from apps.notifications.models import NotificationTarget
from apps.pipelines import triggers
from apps.pipelines.choices import RunStatus, Trigger
from apps.pipelines.commits import Commit
from apps.pipelines.models import PipelineRun
from apps.projects.services import variable_set
from apps.releases.choices import DeploymentStatus, PromotionStatus
from apps.releases.deployers.process import ProcessDeployer
from apps.releases.models import Deployment, Promotion, Release
from apps.releases.services import promotion_approve
from apps.training.models import GateVerdict
from tests.notifications.fakeslack import api_calls, start_slack, stop
from tests.notifications.slackblocks import blocks_of, blocks_text
from tests.pipelines.gitrepo import Repo
from tests.pipelines.test_worker import finished, log_of
from tests.pipelines.worker import WorkerProcess, wait_for

from .closed_loop import Traffic, features_version, serve_on_free_ports

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

EVERY = 10  # seconds: monitor.every of the test's spec
CHANNEL = "C0ALERTS"
BOT_TOKEN = "xoxb-closed-loop"  # noqa: S105 - a test value
#: A train run installs scikit-learn into a fresh virtualenv (the machine's wheels) the first
#: time: seconds on an idle machine, minutes on a loaded one.
RUN_SECONDS = 600
DEPLOY_SECONDS = 300


def succeeded(run: PipelineRun) -> PipelineRun:
    run = finished(run, timeout=RUN_SECONDS)
    assert run.status == RunStatus.SUCCEEDED, {
        j.name: (j.status, j.error_message, log_of(run, j.name)[-3000:]) for j in run.jobs.all()
    }
    return run


def deployed(release: Release, environment: str) -> Deployment:
    def done():
        d = Deployment.objects.filter(release=release, environment__name=environment).first()
        if d is not None and d.status == DeploymentStatus.FAILED:
            raise AssertionError(f"{environment}: {d.error_message}\n{d.log[-3000:]}")
        return d if d and d.status == DeploymentStatus.SUCCEEDED else None

    return wait_for(done, DEPLOY_SECONDS, interval=0.5)


def pending_promotion(release: Release) -> Promotion:
    return wait_for(
        lambda: Promotion.objects.filter(
            release=release, environment__name="production", status=PromotionStatus.PENDING
        ).first(),
        60,
    )


def calm_check(environment, since: datetime) -> DriftCheck | None:
    """The first check that decided something about a window wholly after ``since``."""
    return (
        DriftCheck.objects.filter(environment=environment, window_start__gte=since)
        .exclude(status=CheckStatus.INSUFFICIENT)
        .order_by("window_start")
        .first()
    )


def drift_check(environment, since: datetime) -> DriftCheck | None:
    """The first drifted window that ended after ``since`` (the one the drift began in may
    be drifted already)."""
    return (
        DriftCheck.objects.filter(
            environment=environment, window_end__gt=since, status=CheckStatus.DRIFT
        )
        .order_by("window_start")
        .first()
    )


def alert_messages(slack, text: str = "Data drift in production") -> list[str]:
    """The Slack messages posted about the dataset drift."""
    posted = [blocks_text(blocks_of(r)) for r in api_calls(slack, "chat.postMessage")]
    return [m for m in posted if text in m]


def test_drift_alerts_in_slack_and_retrains_up_to_the_approval_once_per_cooldown(
    project, tmp_path, live_server, settings, member, client
):
    settings.SITE_URL = live_server.url
    repo = Repo(tmp_path / "git")
    spec = repo.read(".controlplane.yml")
    assert spec.count("  every: 15m\n") == 1  # the example's monitor block
    repo.commit(
        "Check drift every 10 s",
        {".controlplane.yml": spec.replace("  every: 15m\n", f"  every: {EVERY}s\n")},
    )
    project.repository_url = repo.url
    project.save()
    serve_on_free_ports(project)
    dev, lead = member("developer", "dev"), member("approver", "lead")
    # The services flush their observations every second (the example's default is 5 s).
    variable_set(project=project, key="CONTROLPLANE_INGEST_FLUSH_SECONDS", value="1", actor=dev)
    features = features_version(project, tmp_path)
    slack = start_slack()
    worker = WorkerProcess(
        concurrency=3,
        beat=True,
        extra_env={
            "CONTROLPLANE_SITE_URL": live_server.url,
            "SLACK_API_URL": slack.url + "/api/",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "CONTROLPLANE_MONITOR_DUE_INTERVAL": "1",
            "CONTROLPLANE_MONITOR_CHECK_DELAY_SECONDS": "2",
            "CONTROLPLANE_ALERT_GROUP_WAIT_SECONDS": "0",
        },
    ).start()
    traffic = None
    started = time.monotonic()
    try:
        # 1. The dummy champion: train → gate ("first model") → release → dev, staging →
        # approved → production.
        first = triggers.pipeline_start(
            project=project,
            pipeline="train",
            actor=dev,
            trigger=Trigger.MANUAL,
            params={"model_type": "dummy"},
            commit=Commit(sha=repo.head, ref="main"),
        )
        first = succeeded(first)
        champion = wait_for(lambda: Release.objects.filter(pipeline_run=first).first(), 60)
        for name in ("dev", "staging"):
            deployed(champion, name)
        promotion_approve(promotion=pending_promotion(champion), user=lead, comment="Baseline.")
        deployed(champion, "production")
        production = project.environments.get(name="production")
        # Warnings and worse page the channel: a dataset drift does; one column drifting
        # alone (an info alert, K-S at p < 0.05 on each of six columns: ~8 % of calm windows
        # here) does not.
        NotificationTarget.objects.create(
            project=project,
            kind="slack",
            destination=CHANNEL,
            name="alerts",
            min_severity="warning",
        )
        print(f"production serves the dummy after {time.monotonic() - started:.0f} s")

        # 2. Traffic like the training data: a whole window of it checked, no drift.
        traffic = Traffic(environment=production, population=Population.load(features.path))
        traffic.start()
        calm = datetime.now(tz=UTC)
        ok = wait_for(lambda: calm_check(production, calm), 60, interval=0.5)
        assert ok.status == CheckStatus.OK, (ok.status, ok.error, ok.drifted_columns)
        assert ok.rows >= 100 and ok.model_version == champion.model_version
        assert not Alert.objects.filter(project=project, rule="dataset_drift").exists()
        assert api_calls(slack, "chat.postMessage") == []

        # 3. Drift: the next window drifts, the alert reaches Slack, a retrain starts.
        traffic.shift = 1.0
        drift_at = datetime.now(tz=UTC)
        drifted = wait_for(lambda: drift_check(production, drift_at), 60, interval=0.5)
        assert set(drifted.drifted_columns) >= {"f0", "f1", "f2", "f3"}
        # The check's row commits first, then its alerts and the retrain.
        alert = wait_for(
            lambda: Alert.objects.filter(project=project, rule="dataset_drift").first(), 30
        )
        assert alert.status == AlertStatus.FIRING and alert.drift_check == drifted
        [message] = wait_for(lambda: alert_messages(slack), 30, interval=0.2)
        assert "4 of 6 columns drifted" in message and "f0" in message, message
        for told in api_calls(slack, "chat.postMessage"):
            assert told["json"]["channel"] == CHANNEL
            assert told["headers"]["authorization"] == f"Bearer {BOT_TOKEN}"

        request = wait_for(lambda: RetrainRequest.objects.filter(drift_check=drifted).first(), 30)
        assert request.skipped_reason == "" and request.alert == alert
        retrain = request.run
        assert (retrain.trigger, retrain.pipeline, retrain.environment) == (
            Trigger.MONITOR,
            "train",
            production,
        )
        assert (
            retrain.trigger_detail.startswith("drift: ") and "production" in retrain.trigger_detail
        )
        assert request.dataset_version.version == 2
        assert request.evidence["dataset"]["rows_added"] >= 100
        print(f"drift retrain started after {time.monotonic() - started:.0f} s")

        # 4. The next drifted window, inside the 6 h cooldown: no second run.
        again = wait_for(
            lambda: DriftCheck.objects.filter(
                environment=production,
                status=CheckStatus.DRIFT,
                window_start__gt=drifted.window_start,
            ).first(),
            60,
            interval=0.5,
        )
        skipped = wait_for(lambda: RetrainRequest.objects.filter(drift_check=again).first(), 30)
        assert skipped.run is None and skipped.skipped_reason.startswith("Cooldown"), (
            skipped.skipped_reason
        )
        traffic.stop()
        assert PipelineRun.objects.filter(project=project, trigger=Trigger.MONITOR).count() == 1
        # One alert, told once: the second window's drift is the same firing alert.
        assert len(alert_messages(slack)) == 1

        # 5. The retrained challenger beats the dummy → release → dev, staging → waits.
        retrain = succeeded(retrain)
        verdict = wait_for(lambda: GateVerdict.objects.filter(job__run=retrain).first(), 30)
        assert verdict.passed and verdict.champion == champion.model_version, verdict.reason
        assert verdict.model_version.trained_on.filter(pk=request.dataset_version.pk).exists()
        release = wait_for(lambda: Release.objects.filter(pipeline_run=retrain).first(), 60)
        for name in ("dev", "staging"):
            deployed(release, name)
        promotion = pending_promotion(release)
        production.refresh_from_db()
        serving = Deployment.objects.filter(environment=production).order_by("-pk").first()
        assert serving.release == champion  # nobody approved: production is unchanged
        print(f"promotion pending after {time.monotonic() - started:.0f} s")

        client.force_login(lead)
        page = client.get(promotion.get_absolute_url())
        assert page.status_code == 200
        html = page.content.decode()
        assert 'id="drift-retrain"' in html and f"run #{retrain.number}</a>" in html
        assert 'id="drift-cause"' in html and "f0" in html
        assert f"features v{request.dataset_version.version}" in html
        assert verdict.reason.split(":")[0] in html  # the gate's comparison beside it
    finally:
        if traffic is not None:
            traffic.stop()
        worker.stop()
        stop(slack)
        for env in ("dev", "staging", "production"):
            ProcessDeployer().stop(project=project.slug, environment=env)
