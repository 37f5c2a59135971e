"""Automatic rollback on alert, on PostgreSQL and Redis with real services deployed by the
process deployer: a release whose service starts failing inside the watch is rolled back (a
real worker and beat probe it, fire the alert and carry the rollback out) and the previous
release answers; after the watch, or for a rule not listed, only the alert fires."""

import threading
import time
from datetime import timedelta

import pytest

from apps.core.models import AuditEvent
from apps.monitoring.choices import AlertSource, AlertStatus
from apps.monitoring.models import Alert, ServiceHealth
from apps.monitoring.rollback import rollback_on_alert
from apps.monitoring.rules import evaluate_rules
from apps.monitoring.services.alerts import alert_fire
from apps.monitoring.services_health import RULES, probe_environment
from apps.notifications.choices import Event
from apps.notifications.models import NotificationDelivery, NotificationTarget
from apps.projects.services import environments_from_spec
from apps.projects.spec.parsed import SpecError
from apps.projects.spec.parser import parse_spec
from apps.releases.choices import DeploymentStatus
from apps.releases.deployers.health import free_port
from apps.releases.deployers.process import ProcessDeployer
from apps.releases.models import Deployment
from apps.releases.services import deployment_execute, deployment_request
from tests.monitoring.service import answer, deploy, fail, make_release, traffic
from tests.pipelines.worker import WorkerProcess, wait_for

ALERTS = {"error_rate": 0.2, "latency_p95_ms": 200}


@pytest.fixture
def deploy_dir(settings, tmp_path):
    settings.CONTROLPLANE_DEPLOY_DIR = tmp_path / "deploy"
    yield settings.CONTROLPLANE_DEPLOY_DIR
    for env in ("dev", "staging", "production"):
        ProcessDeployer().stop(project="churn-model", environment=env)


@pytest.fixture
def dev(project, deploy_dir):
    env = project.environments.get(name="dev")
    env.deployer = "process"
    env.service_port = free_port()
    env.health_check_timeout = 30
    env.rollback_on = ["service_down", "error_rate"]
    env.rollback_watch = timedelta(minutes=15)
    env.save()
    return env


def finished(deployment, timeout=180):
    def done():
        d = Deployment.objects.get(pk=deployment.pk)
        return d if d.status not in (DeploymentStatus.PENDING, DeploymentStatus.RUNNING) else None

    return wait_for(done, timeout, interval=0.5)


class Traffic:
    """Requests to /predict in a thread, a few per second, until stopped."""

    def __init__(self, port: int):
        self.port = port
        self.codes: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                self.codes += traffic(self.port, 1)
            except OSError:
                self.codes.append(0)  # between two releases: nothing listens for a moment
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_release_failing_inside_the_watch_is_rolled_back_and_the_previous_answers(
    project, admin_user, tmp_path, dev, deploy_dir, client
):
    NotificationTarget.objects.create(
        project=project, kind="email", destination="ops@example.com", created_by=admin_user
    )
    worker = WorkerProcess(
        concurrency=3,
        beat=True,
        extra_env={
            "CONTROLPLANE_DEPLOY_DIR": str(deploy_dir),
            "CONTROLPLANE_SERVICE_PROBE_INTERVAL": "1",
            "CONTROLPLANE_RULES_INTERVAL": "1",
        },
    ).start()
    try:
        v1 = make_release(project, admin_user, tmp_path, "v1", alerts=ALERTS)
        d1 = finished(deployment_request(release=v1, environment=dev, actor=admin_user))
        assert d1.status == DeploymentStatus.SUCCEEDED, d1.log
        v2 = make_release(project, admin_user, tmp_path, "v2", alerts=ALERTS)
        d2 = finished(deployment_request(release=v2, environment=dev, actor=admin_user))
        assert d2.status == DeploymentStatus.SUCCEEDED, d2.log
        port = dev.service_port
        assert answer(port)["release"] == "v2"

        with Traffic(port) as load:
            # Healthy: the probes see its traffic, and nothing fires.
            wait_for(
                lambda: ServiceHealth.objects.filter(
                    environment=dev, deployment=d2, requests__gt=0, error_rate=0.0
                ).first(),
                60,
            )
            assert not Alert.objects.filter(environment=dev).exists()
            assert not Deployment.objects.filter(environment=dev, is_rollback=True).exists()

            fail(tmp_path, "v2", "errors")
            rollback = wait_for(
                lambda: Deployment.objects.filter(environment=dev, is_rollback=True).first(), 120
            )
            rollback = finished(rollback)
            assert rollback.status == DeploymentStatus.SUCCEEDED, rollback.log
            assert rollback.release == v1 and rollback.previous == d2
            assert answer(port)["release"] == "v1"
            served = len(load.codes)
            wait_for(lambda: len(load.codes) >= served + 10, 30)
            assert set(load.codes[served + 2 :]) == {200}  # v1 answers the traffic again

        alert = Alert.objects.get(environment=dev, rule="error_rate")
        assert alert.labels["release"] == "v2" and alert.deployment == d2
        assert alert.value > 0.2
        evidence = rollback.details["automatic_rollback"]
        assert evidence["alert_id"] == alert.pk and evidence["rule"] == "error_rate"
        assert (evidence["from_release"], evidence["to_release"]) == ("v2", "v1")
        assert 0 < evidence["seconds_after_deploy"] < 15 * 60
        assert rollback.details["reason"].startswith("Automatic rollback: alert error_rate")
        d2.refresh_from_db()
        assert d2.details["rolled_back_by_alert"]["rollback_deployment"] == rollback.pk
        audit = AuditEvent.objects.get(action="deployment.auto_rollback")
        assert audit.object_id == str(rollback.pk) and audit.data["environment_id"] == dev.pk
        assert (audit.from_state, audit.to_state) == ("v2", "v1")
        # Notified as any rollback is: through the deployment signals.
        assert NotificationDelivery.objects.filter(
            event=Event.DEPLOYMENT_ROLLED_BACK, object_id=rollback.pk
        ).exists()
        # v2 no longer serves: its alert resolves.
        wait_for(lambda: Alert.objects.filter(pk=alert.pk, status=AlertStatus.RESOLVED).first(), 60)
    finally:
        worker.stop()

    # Shown on the deployment pages and the environment page.
    client.force_login(admin_user)
    page = client.get(rollback.get_absolute_url()).content.decode()
    assert "automatic rollback" in page and "error_rate" in page and f"#{d2.pk}" in page
    page = client.get(d2.get_absolute_url()).content.decode()
    assert "rolled-back-by-alert" in page and f"deployment #{rollback.pk}" in page
    page = client.get(dev.get_absolute_url()).content.decode()
    assert 'id="service-health"' in page and "service_down, error_rate" in page
    assert "Automatic rollback: alert error_rate" in page  # the timeline's reason
    assert "Deployment auto rollback" in page  # and the audit row, linked
    assert f'href="{rollback.get_absolute_url()}"' in page


@pytest.mark.django_db
def test_after_the_watch_or_for_a_rule_not_listed_only_the_alert_fires(
    project, admin_user, tmp_path, dev, django_capture_on_commit_callbacks
):
    v1 = make_release(project, admin_user, tmp_path, "v1", alerts=ALERTS)
    deploy(v1, dev, admin_user)
    v2 = make_release(project, admin_user, tmp_path, "v2", alerts=ALERTS)
    d2 = deploy(v2, dev, admin_user)
    port = dev.service_port

    # Inside the watch, but latency_p95 is not in rollback_on: an alert, no rollback.
    fail(tmp_path, "v2", "slow")
    probe_environment(environment=dev, deployment=d2)
    traffic(port, 10)
    probe_environment(environment=dev, deployment=d2)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_rules(only=RULES)
    assert Alert.objects.get(rule="latency_p95").status == AlertStatus.FIRING
    assert not Deployment.objects.filter(environment=dev, is_rollback=True).exists()

    # After the watch: error_rate is listed, yet only the alert fires.
    dev.rollback_watch = timedelta(seconds=1)
    dev.save(update_fields=["rollback_watch"])
    time.sleep(1.5)
    fail(tmp_path, "v2", "errors")
    assert traffic(port, 20) == [500] * 20
    probe_environment(environment=dev, deployment=d2)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_rules(only=RULES)
    alert = Alert.objects.get(rule="error_rate")
    assert alert.status == AlertStatus.FIRING and alert.deployment == d2
    assert not Deployment.objects.filter(environment=dev, is_rollback=True).exists()
    assert not AuditEvent.objects.filter(action__startswith="deployment.auto_rollback").exists()
    assert AuditEvent.objects.filter(action="alert.fired", object_id=str(alert.pk)).exists()
    assert answer(port)["release"] == "v2"  # nothing was rolled back


@pytest.mark.django_db
def test_service_down_inside_the_watch_rolls_back_once_and_never_a_rollback(
    project, admin_user, tmp_path, dev, django_capture_on_commit_callbacks
):
    v1 = make_release(project, admin_user, tmp_path, "v1")
    d1 = deploy(v1, dev, admin_user)
    # The first release has nothing to go back to: the alert only, and the audit says why.
    fail(tmp_path, "v1", "down")
    for _ in range(2):
        probe_environment(environment=dev, deployment=d1)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_rules(only=RULES)
    assert Alert.objects.filter(rule="service_down", status=AlertStatus.FIRING).count() == 1
    skipped = AuditEvent.objects.get(action="deployment.auto_rollback_skipped")
    assert "nothing to roll back to" in skipped.reason
    fail(tmp_path, "v1", "")

    v2 = make_release(project, admin_user, tmp_path, "v2")
    d2 = deploy(v2, dev, admin_user)
    fail(tmp_path, "v2", "down")
    # v1's failed checks do not count against v2: one of its own is not enough.
    probe_environment(environment=dev, deployment=d2)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_rules(only=RULES)
    assert not Deployment.objects.filter(environment=dev, is_rollback=True).exists()
    probe_environment(environment=dev, deployment=d2)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_rules(only=RULES)
    rollback = Deployment.objects.get(environment=dev, is_rollback=True)
    assert rollback.status == DeploymentStatus.PENDING and rollback.release == v1
    # Evaluated again before a worker took it: still one alert, still one rollback.
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_rules(only=RULES)
    alert = Alert.objects.get(rule="service_down", labels__release="v2")
    assert rollback_on_alert(alert=alert) is None
    assert Deployment.objects.filter(environment=dev, is_rollback=True).count() == 1
    rollback = deployment_execute(deployment_id=rollback.pk)
    assert rollback.status == DeploymentStatus.SUCCEEDED, rollback.log
    assert answer(dev.service_port)["release"] == "v1"

    # The rollback itself failing inside its watch is not rolled back again (no ping-pong).
    fail(tmp_path, "v1", "down")
    for _ in range(2):
        probe_environment(environment=dev, deployment=rollback)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_rules(only=RULES)
    assert Deployment.objects.filter(environment=dev, is_rollback=True).count() == 1
    assert AuditEvent.objects.filter(
        action="deployment.auto_rollback_skipped", reason__contains="is a rollback itself"
    ).exists()


@pytest.mark.django_db
def test_the_spec_sets_rollback_on_and_watch_of_new_environments(project):
    spec = parse_spec(
        "version: 1\n"
        'jobs:\n  t: {kind: test, script: ["true"]}\n'
        "environments:\n"
        "  canary: {rollback_on: [service_down, error_rate], watch: 10m}\n"
        "  plain: {}\n"
    )
    canary = spec.environments["canary"]
    assert canary.rollback_on == ("service_down", "error_rate") and canary.watch_seconds == 600
    created = environments_from_spec(project=project, spec=spec.raw, actor="pipeline")
    by_name = {e.name: e for e in created}
    assert by_name["canary"].rollback_on == ["service_down", "error_rate"]
    assert by_name["canary"].rollback_watch == timedelta(minutes=10)
    assert by_name["plain"].rollback_on == [] and by_name["plain"].rollback_watch == timedelta(
        minutes=15
    )
    with pytest.raises(SpecError, match="watch"):
        parse_spec(
            'version: 1\njobs:\n  t: {kind: test, script: ["true"]}\n'
            "environments:\n  canary: {watch: 15 minutes}\n"
        )


@pytest.mark.django_db
def test_project_admins_set_the_rollback_of_an_existing_environment(project, api, admin_user):
    production = project.environments.get(name="production")
    url = f"/api/v1/environments/{production.pk}/"
    response = api(admin_user).patch(
        url, {"rollback_on": ["error_rate", "error_rate", "HighErrorRate"]}, format="json"
    )
    assert response.status_code == 200, response.content
    response = api(admin_user).patch(url, {"rollback_watch": "00:10:00"}, format="json")
    assert response.status_code == 200, response.content
    production.refresh_from_db()
    assert production.rollback_on == ["error_rate", "HighErrorRate"]
    assert production.rollback_watch == timedelta(minutes=10)
    response = api(admin_user).patch(url, {"rollback_on": "error_rate"}, format="json")
    assert response.status_code == 400 and "rollback_on" in response.json()
    production.refresh_from_db()
    assert production.rollback_on == ["error_rate", "HighErrorRate"]


@pytest.mark.django_db
def test_a_prometheus_alert_listed_in_rollback_on_rolls_back_too(
    project, admin_user, tmp_path, dev, django_capture_on_commit_callbacks
):
    dev.rollback_on = ["HighErrorRate"]
    dev.save(update_fields=["rollback_on"])
    v1 = make_release(project, admin_user, tmp_path, "v1")
    deploy(v1, dev, admin_user)
    v2 = make_release(project, admin_user, tmp_path, "v2")
    d2 = deploy(v2, dev, admin_user)
    # Another alert of the environment, not listed: nothing.
    with django_capture_on_commit_callbacks(execute=True):
        alert_fire(
            rule="HighLatency",
            labels={"severity": "warning"},
            severity="warning",
            summary="p95 above 500 ms",
            environment=dev,
            source=AlertSource.ALERTMANAGER,
        )
    assert not Deployment.objects.filter(environment=dev, is_rollback=True).exists()
    with django_capture_on_commit_callbacks(execute=True):
        alert = alert_fire(
            rule="HighErrorRate",
            labels={"severity": "critical"},
            severity="critical",
            summary="5xx above 5 % for 5 minutes",
            environment=dev,
            source=AlertSource.ALERTMANAGER,
        )
    rollback = Deployment.objects.get(environment=dev, is_rollback=True)
    assert rollback.release == v1 and rollback.previous == d2
    alert.refresh_from_db()
    assert alert.deployment == d2  # what it rolled back
    rollback = deployment_execute(deployment_id=rollback.pk)
    assert rollback.status == DeploymentStatus.SUCCEEDED, rollback.log
    assert answer(dev.service_port)["release"] == "v1"
