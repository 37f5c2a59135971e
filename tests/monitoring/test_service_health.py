"""Service health on PostgreSQL with a real service deployed by the process deployer: the probe
reads its health check, its /metrics (error rate and p95 over the interval since the previous
probe) and its process group's CPU and memory from /proc; the rules fire from the probes."""

import os
import signal
import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from apps.monitoring import services_health
from apps.monitoring.models import ServiceHealth
from apps.monitoring.services_health import (
    RULES,
    alert_thresholds,
    interval_figures,
    parse_metrics,
    probe_environment,
    probe_services,
    quantile,
    service_alerts,
)
from apps.releases.choices import DeploymentStatus
from apps.releases.deployers.health import free_port
from apps.releases.deployers.process import ProcessDeployer
from tests.dockerengine import IMAGE, docker_client
from tests.factories import DeploymentFactory
from tests.monitoring.service import answer, deploy, fail, make_release, traffic
from tests.releases.test_deployer_process import group_gone

pytestmark = pytest.mark.django_db

ALERTS = {"error_rate": 0.2, "latency_p95_ms": 200, "cpu": 0.3, "memory_mb": 100}


@pytest.fixture
def deploy_dir(settings, tmp_path):
    settings.CONTROLPLANE_DEPLOY_DIR = tmp_path / "deploy"
    yield settings.CONTROLPLANE_DEPLOY_DIR
    for env in ("dev", "staging"):
        ProcessDeployer().stop(project="churn-model", environment=env)


@pytest.fixture
def dev(project, deploy_dir):
    env = project.environments.get(name="dev")
    env.deployer = "process"
    env.service_port = free_port()
    env.health_check_timeout = 20
    env.save()
    return env


def firing(rule):
    return [(a["environment"].name, a["value"]) for a in service_alerts(rule)]


def test_metrics_are_read_as_prometheus_reads_them():
    registry = CollectorRegistry()
    requests = Counter("model_requests", "", ["endpoint", "code"], registry=registry)
    latency = Histogram(
        "model_request_duration_seconds",
        "",
        ["endpoint"],
        buckets=(0.005, 0.25, 0.5, 1.0),
        registry=registry,
    )
    for _ in range(90):
        requests.labels("/predict", "200").inc()
        latency.labels("/predict").observe(0.003)
    for _ in range(10):
        requests.labels("/predict", "503").inc()
        latency.labels("/predict").observe(0.4)
    for _ in range(50):  # the health checks are not traffic
        requests.labels("/healthz", "500").inc()
        latency.labels("/healthz").observe(2.0)
    counters = parse_metrics(generate_latest(registry).decode())
    assert counters["requests"] == 100 and counters["errors"] == 10
    assert counters["buckets"][-1] == ["+Inf", 100]
    # histogram_quantile(0.95): rank 95 falls in (0.25, 0.5] holding 90 → 100: 0.25 + 0.25 / 2.
    assert quantile(0.95, counters["buckets"]) == pytest.approx(0.375)
    figures = interval_figures({}, counters)
    assert figures == {"requests": 100, "error_rate": 0.1, "p95_ms": 375.0}
    # Over an interval: only what changed counts; a counter going down is a restart.
    for _ in range(20):
        requests.labels("/predict", "500").inc()
        latency.labels("/predict").observe(0.7)
    later = parse_metrics(generate_latest(registry).decode())
    figures = interval_figures(counters, later)
    assert figures["requests"] == 20 and figures["error_rate"] == 1.0
    assert 500 < figures["p95_ms"] <= 1000
    assert interval_figures(later, counters)["requests"] == 100
    with pytest.raises(ValueError):
        parse_metrics("model_requests_total{code=200 oops\n")


def test_thresholds_come_from_the_spec_and_are_read_defensively(project, admin_user, tmp_path, dev):
    release = make_release(project, admin_user, tmp_path, "v1", alerts=ALERTS)
    deployment = deploy(release, dev, admin_user)
    assert alert_thresholds(deployment) == {
        "error_rate": 0.2,
        "latency_p95_ms": 200.0,
        "cpu": 0.3,
        "memory_mb": 100.0,
    }
    run = release.pipeline_run
    run.spec["raw"]["monitor"] = {"alerts": {"error_rate": "lots", "cpu": False, "memory_mb": -1}}
    run.save(update_fields=["spec"])
    deployment.refresh_from_db()
    assert alert_thresholds(deployment) == {
        "error_rate": None,
        "latency_p95_ms": None,
        "cpu": None,
        "memory_mb": None,
    }
    run.spec["raw"]["monitor"] = "not a mapping"
    run.save(update_fields=["spec"])
    deployment.refresh_from_db()
    assert alert_thresholds(deployment)["error_rate"] == services_health.DEFAULTS["error_rate"]
    # The parsed block, once the monitor schema carries alerts, is read too.
    run.spec["monitor"] = {"alerts": {"memory_mb": 512}}
    run.save(update_fields=["spec"])
    deployment.refresh_from_db()
    assert alert_thresholds(deployment)["memory_mb"] == 512.0


def test_probes_of_a_deployed_service_and_the_rules_they_fire(project, admin_user, tmp_path, dev):
    release = make_release(project, admin_user, tmp_path, "v1", alerts=ALERTS)
    deployment = deploy(release, dev, admin_user)
    port = dev.service_port
    assert answer(port)["release"] == "v1"

    first = probe_environment(environment=dev, deployment=deployment)
    assert first.up and first.deployment_id == deployment.pk
    assert first.url == f"http://127.0.0.1:{port}"
    assert first.requests == 0 and first.error_rate is None  # the deployer's health checks
    assert first.state["target"].startswith("pid:")
    assert 3 < first.memory_mb < 100 and first.cpu is None  # CPU needs two readings

    assert traffic(port, 30) == [200] * 30
    time.sleep(1.5)  # CPU is a share of the wall time between two probes: make it a real one
    healthy = probe_environment(environment=dev, deployment=deployment)
    assert healthy.requests == 30 and healthy.error_rate == 0.0
    assert 0 < healthy.p95_ms < 200
    assert healthy.cpu is not None and 0 <= healthy.cpu < 0.3
    assert all(firing(rule) == [] for rule in RULES)

    fail(tmp_path, "v1", "errors")
    assert traffic(port, 20) == [500] * 20
    row = probe_environment(environment=dev, deployment=deployment)
    assert row.up and row.requests == 20 and row.error_rate == 1.0
    [alert] = service_alerts("error_rate")
    assert alert["labels"] == {"project": "churn-model", "environment": "dev", "release": "v1"}
    assert alert["value"] == 1.0 and alert["deployment"] == deployment
    assert alert["annotations"]["release"] == "v1" and alert["annotations"]["threshold"] == 0.2
    assert "error rate 100% of 20 requests > 20%" in alert["summary"]

    fail(tmp_path, "v1", "slow")
    assert traffic(port, 10) == [200] * 10
    row = probe_environment(environment=dev, deployment=deployment)
    assert row.error_rate == 0.0 and row.p95_ms >= 250
    assert firing("error_rate") == [] and firing("latency_p95") == [("dev", row.p95_ms)]

    fail(tmp_path, "v1", "cpu")
    traffic(port, 1)
    probe_environment(environment=dev, deployment=deployment)
    time.sleep(2)
    row = probe_environment(environment=dev, deployment=deployment)
    assert row.cpu > 0.3, row.cpu
    assert firing("cpu") == [("dev", row.cpu)]

    fail(tmp_path, "v1", "memory")
    traffic(port, 1)
    row = probe_environment(environment=dev, deployment=deployment)
    assert row.memory_mb > 150, row.memory_mb
    assert firing("memory") == [("dev", row.memory_mb)]

    # Down: one failed health check may be a blip; two in a row fire.
    fail(tmp_path, "v1", "down")
    row = probe_environment(environment=dev, deployment=deployment)
    assert not row.up and "answered HTTP 503" in row.health_message
    assert firing("service_down") == []
    probe_environment(environment=dev, deployment=deployment)
    [(name, streak)] = firing("service_down")
    assert name == "dev" and streak == 2
    [down] = service_alerts("service_down")
    assert down["severity"] == "critical"

    # The process crashed (killed, not yet restarted by the supervisor): no answer, and
    # nothing to measure.
    pid = ProcessDeployer().status(project="churn-model", environment="dev")["pid"]
    os.killpg(pid, signal.SIGKILL)
    assert group_gone(pid)
    row = probe_environment(environment=dev, deployment=deployment)
    assert not row.up and "Connection" in row.health_message
    assert row.memory_mb is None
    assert row.resources_message == f"pid:{pid} is not running or cannot be read"
    assert firing("service_down") == [("dev", 3.0)]

    # Old probes are not judged: the probe task stopped, nothing is known now.
    ServiceHealth.objects.update(checked_at=row.checked_at - timedelta(minutes=10))
    assert firing("service_down") == []


def test_every_deployed_environment_is_probed_and_the_history_stays_bounded(
    project, admin_user, tmp_path, dev, monkeypatch
):
    staging = project.environments.get(name="staging")
    staging.deployer = "process"
    staging.service_port = free_port()
    staging.save()
    release = make_release(project, admin_user, tmp_path, "v1")
    deploy(release, dev, admin_user)
    # Production has nothing deployed: not probed.
    assert probe_services() == 1
    deploy(release, staging, admin_user)
    monkeypatch.setattr(services_health, "HISTORY", 3)
    for _ in range(4):
        assert probe_services() == 2
    rows = {r.environment.name: r for r in ServiceHealth.objects.select_related("environment")}
    assert set(rows) == {"dev", "staging"}
    assert all(r.up for r in rows.values())
    assert len(rows["dev"].history) == 3 and len(rows["staging"].history) == 3
    assert rows["dev"].history[-1]["at"] == rows["dev"].checked_at.isoformat()


@pytest.mark.docker
def test_a_containers_cpu_and_memory_come_from_the_docker_engine():
    client = docker_client()
    program = "x = bytearray(120 * 1024 * 1024)\nx[::4096] = b'1' * len(x[::4096])\nwhile 1: pass"
    container = client.containers.run(
        IMAGE,
        ["python3", "-c", program],
        detach=True,
        network_mode="none",
        init=True,
        labels={"controlplane.test": "service-health"},
    )
    try:
        time.sleep(2)
        first = services_health.docker_usage(container.id)
        time.sleep(2)
        second = services_health.docker_usage(container.id)
        assert first is not None and second is not None
        assert second["rss_bytes"] > 100 * 1024 * 1024
        assert (second["cpu_seconds"] - first["cpu_seconds"]) / 2 > 0.3  # it spins
    finally:
        container.remove(force=True)
    assert services_health.docker_usage(container.id) is None  # gone: nothing to read


def test_a_service_that_never_answers_costs_its_timeouts_not_everyones(
    project, admin_user, tmp_path, dev
):
    release = make_release(project, admin_user, tmp_path, "v1")
    deploy(release, dev, admin_user)
    # Two services that accept connections and never answer (a hung process).
    hung = []
    for name in ("staging", "production"):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        hung.append(sock)
        env = project.environments.get(name=name)
        DeploymentFactory(
            release=release,
            environment=env,
            status=DeploymentStatus.SUCCEEDED,
            finished_at=timezone.now(),
            url=f"http://127.0.0.1:{sock.getsockname()[1]}",
        )
    try:
        started = time.monotonic()
        assert probe_services() == 3
        elapsed = time.monotonic() - started
    finally:
        for sock in hung:
            sock.close()
    rows = {r.environment.name: r for r in ServiceHealth.objects.select_related("environment")}
    assert rows["dev"].up
    for name in ("staging", "production"):
        assert not rows[name].up and "timed out" in rows[name].health_message
        assert "timed out" in rows[name].metrics_message
    # Each hung service costs two timeouts (health check, /metrics), side by side.
    timeouts = 2 * services_health.PROBE_TIMEOUT
    assert timeouts <= elapsed < 2 * timeouts, elapsed
