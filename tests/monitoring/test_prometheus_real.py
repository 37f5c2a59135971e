"""The shipped monitoring files with the real thing: Debian's Prometheus and Alertmanager on
free loopback ports (own data folders), the control plane as a live server, and the example
model service as a real process.

Prometheus finds the model service through the control plane's service discovery and scrapes
it and the control plane's /metrics with the token; a shipped rule (ModelServiceDown) fires
when the service stops, Alertmanager posts it with its bearer token to the control plane's
receiver (/integrations/alertmanager/), which records the alert for the project and
environment, and the next scrape counts it firing. Every Grafana panel's PromQL runs without
error.

Timings are the only things changed from the shipped files: scrape and evaluation every
second, `for:` and `group_wait` shortened, addresses pointed at this test's processes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.utils import timezone

from apps.monitoring.choices import AlertSource, AlertStatus
from apps.monitoring.models import Alert
from apps.pipelines.choices import RunStatus
from apps.releases.choices import DeploymentStatus
from apps.releases.deployers.health import free_port
from tests.factories import DeploymentFactory, EnvironmentFactory, ReleaseFactory, RunFactory

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
EXAMPLE = ROOT / "examples" / "churn-model"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
METRICS_TOKEN = "prom-scrape-token-for-tests"  # noqa: S105
AM_TOKEN = "alertmanager-token-for-tests"  # noqa: S105

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (PROMETHEUS and ALERTMANAGER),
        reason="needs Debian's prometheus and prometheus-alertmanager",
    ),
]

# Until the example serves GET /metrics itself (examples/churn-model, another change), a tiny
# process with the same metric names stands in front of the real service's port.
STAND_IN = """
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
REQ = Counter("model_requests", "Requests", ["endpoint", "code"])
DUR = Histogram("model_request_duration_seconds", "Latency", ["endpoint"])
PRED = Counter("model_predictions", "Predictions", ["class"])
DROP = Counter("model_telemetry_dropped", "Dropped observations")
REQ.labels("/predict", "200").inc(40); REQ.labels("/predict", "500").inc(1)
DUR.labels("/predict").observe(0.02); PRED.labels("0").inc(30); PRED.labels("1").inc(10)
DROP.inc(0)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = generate_latest() if self.path.startswith("/metrics") else b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def http_json(url: str, *, data: bytes | None = None, headers: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError as exc:  # not listening yet
            value, last = None, exc
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def status_code(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []

    def start(args, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(  # noqa: S603
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, **kwargs
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def example_service(tmp_path: Path, start) -> tuple[subprocess.Popen, int, bool]:
    """The example service as a real process (from a copy: it trains its model on the fly and
    writes it next to itself); returns it, the port Prometheus should scrape and whether that
    is the example's own /metrics."""
    copy = tmp_path / "churn-model"
    shutil.copytree(
        EXAMPLE, copy, ignore=shutil.ignore_patterns("artifacts", "tests", "__pycache__")
    )
    port = free_port()
    proc = start([sys.executable, "-m", "model.serve", "--port", str(port)], cwd=copy)
    wait_until(lambda: status_code(f"http://127.0.0.1:{port}/healthz") == 200, 60, "the example")
    instance = {f"f{i}": 0.1 * i for i in range(6)}
    body = json.dumps({"instances": [instance] * 3}).encode()
    http_json(
        f"http://127.0.0.1:{port}/predict",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    if status_code(f"http://127.0.0.1:{port}/metrics") == 200:
        return proc, port, True
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    stand_in_port = free_port()
    stand_in = start(
        [sys.executable, "-c", STAND_IN],
        env={**os.environ, "PORT": str(stand_in_port)},
        cwd=ROOT,
    )
    wait_until(
        lambda: status_code(f"http://127.0.0.1:{stand_in_port}/metrics") == 200, 30, "stand-in"
    )
    return stand_in, stand_in_port, False


def prometheus_config(tmp: Path, *, control_plane: str, am_port: int, prom_port: int) -> Path:
    token = tmp / "metrics_token"
    token.write_text(METRICS_TOKEN)
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{am_port}"]}
    ]
    host = urllib.parse.urlsplit(control_plane).netloc
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["controlplane"]["static_configs"] = [{"targets": [host]}]
    jobs["controlplane"]["authorization"]["credentials_file"] = str(token)
    sd = jobs["model-services"]["http_sd_configs"][0]
    assert sd["url"].endswith("/api/v1/monitoring/targets/")
    sd.update(url=f"{control_plane}/api/v1/monitoring/targets/", refresh_interval="1s")
    sd["authorization"]["credentials_file"] = str(token)
    jobs["prometheus"]["static_configs"] = [{"targets": [f"127.0.0.1:{prom_port}"]}]
    del jobs["controlplane-worker"]  # this test has no separate worker
    config["scrape_configs"] = list(jobs.values())
    rules = tmp / "rules"
    rules.mkdir()
    for path in (MONITORING / "rules").glob("*.yml"):
        shipped = yaml.safe_load(path.read_text())
        for group in shipped["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "0s"
        (rules / path.name).write_text(yaml.safe_dump(shipped))
    config["rule_files"] = [str(rules / "*.yml")]
    out = tmp / "prometheus.yml"
    out.write_text(yaml.safe_dump(config))
    check = subprocess.run(  # noqa: S603
        ["promtool", "check", "config", str(out)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return out


def alertmanager_config(tmp: Path, *, control_plane: str) -> Path:
    token = tmp / "alertmanager_token"
    token.write_text(AM_TOKEN)
    config = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="1s")
    hook = config["receivers"][0]["webhook_configs"][0]
    assert hook["url"].endswith("/integrations/alertmanager/")
    hook["url"] = f"{control_plane}/integrations/alertmanager/"
    hook["http_config"]["authorization"]["credentials_file"] = str(token)
    out = tmp / "alertmanager.yml"
    out.write_text(yaml.safe_dump(config))
    return out


def grafana_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, PromQL) of every shipped panel, with Grafana's variables as they are
    when "All" is selected."""
    out = []
    for path in sorted((MONITORING / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = (
                    target["expr"]
                    .replace("$__rate_interval", "1m")
                    .replace("$project", ".*")
                    .replace("$environment", ".*")
                )
                out.append((path.stem, panel["title"], expr))
    return out


def test_prometheus_scrapes_both_through_discovery_a_rule_fires_and_alertmanager_posts(
    live_server, settings, tmp_path, processes
):
    settings.METRICS_TOKEN = METRICS_TOKEN
    settings.METRICS_ALLOW = []
    settings.ALERTMANAGER_TOKEN = AM_TOKEN
    service, port, own_metrics = example_service(tmp_path, processes)
    release = ReleaseFactory(project__slug="churn", version="v7")
    production = EnvironmentFactory(project=release.project, name="production")
    DeploymentFactory(
        release=release,
        environment=production,
        status=DeploymentStatus.SUCCEEDED,
        url=f"http://127.0.0.1:{port}",
        deployer="process",
        finished_at=timezone.now(),
    )
    RunFactory(project=release.project, status=RunStatus.RUNNING)

    am_port, prom_port = free_port(), free_port()
    processes(
        [
            ALERTMANAGER,
            f"--config.file={alertmanager_config(tmp_path, control_plane=live_server.url)}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
            f"--storage.path={tmp_path / 'am-data'}",
        ]
    )
    config = prometheus_config(
        tmp_path, control_plane=live_server.url, am_port=am_port, prom_port=prom_port
    )
    processes(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
        ]
    )
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def query(expr: str) -> dict:
        return http_json(f"{api}/query?" + urllib.parse.urlencode({"query": expr}))

    def targets_up() -> dict | None:
        active = http_json(f"{api}/targets")["data"]["activeTargets"]
        by_job = {t["labels"]["job"]: t for t in active if t["health"] == "up"}
        if {"controlplane", "model-services"} <= set(by_job):
            return by_job
        return None

    up = wait_until(targets_up, 60, "both targets up")
    labels = up["model-services"]["labels"]
    assert labels["project"] == "churn" and labels["environment"] == "production"
    assert labels["release"] == "v7" and labels["instance"] == f"127.0.0.1:{port}"

    running = wait_until(
        lambda: query('controlplane_runs{status="running"}')["data"]["result"], 30, "runs"
    )
    assert float(running[0]["value"][1]) == 1
    served = wait_until(
        lambda: query('model_requests_total{project="churn"}')["data"]["result"],
        30,
        "the service's requests",
    )
    assert served[0]["metric"]["environment"] == "production", served
    if own_metrics:
        assert sum(float(r["value"][1]) for r in served) >= 1

    # Every Grafana panel's query is valid PromQL against this Prometheus.
    failures = []
    for board, title, expr in grafana_queries():
        answer = query(expr)
        if answer.get("status") != "success":
            failures.append((board, title, expr, answer))
    assert not failures, failures
    assert len(grafana_queries()) >= 30

    # The service stops: the shipped ModelServiceDown fires, Alertmanager posts it to the
    # control plane (with its token: the receiver refuses others), an Alert row is made.
    assert not Alert.objects.filter(rule="ModelServiceDown").exists()
    service.send_signal(signal.SIGTERM)
    service.wait(timeout=10)
    alert = wait_until(
        lambda: Alert.objects.filter(rule="ModelServiceDown").first(), 90, "the alert"
    )
    assert alert.source == AlertSource.ALERTMANAGER
    assert alert.status == AlertStatus.FIRING
    assert alert.project == release.project and alert.environment == production
    assert alert.severity == "critical"
    assert alert.labels["release"] == "v7"
    assert "does not answer" in alert.summary + json.dumps(alert.annotations)
    # ... and the control plane's own /metrics counts it, as Prometheus sees.
    wait_until(
        lambda: [
            r
            for r in query('controlplane_alerts_firing{severity="critical"}')["data"]["result"]
            if float(r["value"][1]) == 1
        ],
        30,
        "the alert counted firing",
    )
