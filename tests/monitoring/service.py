"""A tiny model service for the service-health and rollback tests, deployed for real by the
process deployer: stdlib only, the example's metric names on ``/metrics`` (Prometheus text
format), and a failure mode read from a flag file at each request (the test writes it):
``errors`` (``/predict`` answers 500), ``down`` (the health check fails too), ``slow``
(``/predict`` takes 300 ms), ``cpu`` (a thread spins), ``memory`` (holds 150 MiB)."""

import hashlib
import io
import json
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from apps.pipelines import services as pipeline_services
from apps.pipelines.artifacts import bundle_store_put
from apps.projects.spec.parser import parse_spec
from apps.releases.choices import DeploymentStatus
from apps.releases.services import deployment_execute, deployment_request, release_create

SERVER = r"""
import json, os, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RELEASE = __RELEASE__
FLAG = __FLAG__
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf"))
lock = threading.Lock()
requests_total = {}  # (endpoint, code) -> count
histogram = {}  # endpoint -> [per-bucket counts], sum, count
hold = []
spinning = []


def mode():
    try:
        with open(FLAG) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def spin():
    while True:
        pass


def observe(endpoint, code, seconds):
    with lock:
        requests_total[(endpoint, code)] = requests_total.get((endpoint, code), 0) + 1
        counts, total, n = histogram.get(endpoint, ([0] * len(BUCKETS), 0.0, 0))
        for i, le in enumerate(BUCKETS):
            if seconds <= le:
                counts[i] += 1
        histogram[endpoint] = (counts, total + seconds, n + 1)


HIST = "model_request_duration_seconds"


def sample(name, value, **labels):
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {value}"


def metrics():
    lines = ["# HELP model_requests_total Requests answered.",
             "# TYPE model_requests_total counter"]
    with lock:
        for (endpoint, code), n in sorted(requests_total.items()):
            lines.append(sample("model_requests_total", n, endpoint=endpoint, code=code))
        lines += ["# HELP model_request_duration_seconds Time to answer.",
                  "# TYPE model_request_duration_seconds histogram"]
        for endpoint, (counts, total, n) in sorted(histogram.items()):
            for le, c in zip(BUCKETS, counts):
                bound = "+Inf" if le == float("inf") else repr(le)
                lines.append(sample(f"{HIST}_bucket", c, endpoint=endpoint, le=bound))
            lines.append(sample(f"{HIST}_sum", total, endpoint=endpoint))
            lines.append(sample(f"{HIST}_count", n, endpoint=endpoint))
    return ("\n".join(lines) + "\n").encode()


class Handler(BaseHTTPRequestHandler):
    def answer(self, code, body, kind="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        start = time.monotonic()
        now = mode()
        if now == "cpu" and not spinning:
            spinning.append(threading.Thread(target=spin, daemon=True))
            spinning[0].start()
        if now == "memory" and not hold:
            hold.append(bytearray(150 * 1024 * 1024))
            for i in range(0, len(hold[0]), 4096):
                hold[0][i] = 1
        if self.path == "/metrics":
            return self.answer(200, metrics(), "text/plain; version=0.0.4")
        if self.path == "/healthz":
            code = 503 if now == "down" else 200
            self.answer(code, json.dumps({"status": "ok", "release": RELEASE}).encode())
            return observe("/healthz", str(code), time.monotonic() - start)
        if self.path == "/predict":
            if now == "slow":
                time.sleep(0.3)
            code = 500 if now in ("errors", "down") else 200
            self.answer(code, json.dumps({"release": RELEASE, "prediction": 1}).encode())
            return observe("/predict", str(code), time.monotonic() - start)
        self.answer(404, b"{}")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def make_bundle(tmp_path: Path, release: str, flag: Path) -> str:
    """The service as a release bundle in the bundle store; returns its digest."""
    code = SERVER.replace("__RELEASE__", repr(release)).replace("__FLAG__", repr(str(flag)))
    code = code.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("server.py")
        info.size = len(code)
        tar.addfile(info, io.BytesIO(code))
    path = tmp_path / f"{release}.tar.gz"
    path.write_bytes(buf.getvalue())
    digest = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    bundle_store_put(path, digest)
    return digest


SPEC = """\
version: 1
jobs:
  t: {kind: test, script: ["true"]}
serve: {command: python server.py, health: /healthz, port: 8080}
"""


def make_release(project, actor, tmp_path: Path, version: str, *, alerts: dict | None = None):
    """A release of the service, its run's spec stored as a run stores it (``to_dict()`` of
    the parsed spec, with the text as written under ``raw``); ``alerts`` is its
    ``monitor.alerts``. The flag file of its failure mode is ``tmp_path / f"{version}.mode"``."""
    run = pipeline_services.run_create(
        project=project, actor=actor, jobs=[{"name": "t", "script": ["true"]}]
    )
    spec = parse_spec(SPEC).to_dict()
    if alerts is not None:
        # As the spec's monitor block says it (its schema is the checks helper's).
        spec["raw"]["monitor"] = {"alerts": alerts}
    run.spec = spec
    run.save(update_fields=["spec"])
    return release_create(
        project=project,
        version=version,
        commit_sha=("abc1234" + version).ljust(40, "0"),
        actor=actor,
        pipeline_run=run,
        bundle_digest=make_bundle(tmp_path, version, tmp_path / f"{version}.mode"),
    )


def fail(tmp_path: Path, version: str, how: str) -> None:
    (tmp_path / f"{version}.mode").write_text(how)


def traffic(port: int, n: int) -> list[int]:
    """``n`` requests to /predict; their status codes."""
    codes = []
    for _ in range(n):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/predict", timeout=5) as r:
                codes.append(r.status)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
    return codes


def answer(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def deploy(release, environment, actor):
    """Deploy ``release`` to ``environment`` now, in this process, and check it succeeded."""
    deployment = deployment_request(release=release, environment=environment, actor=actor)
    deployment = deployment_execute(deployment_id=deployment.pk)
    assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.log
    return deployment
