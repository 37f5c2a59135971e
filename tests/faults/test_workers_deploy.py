"""kill -9 of the worker in the middle of a process-deployer switch: while the candidate is
checked on its side port, and after the serving release was stopped while the new one starts
on the real port. The deployment fails as "worker lost", the half-done switch is undone (what it
started is stopped, the previous release is started again) and exactly one release serves —
the previous one — until the next deploy switches it properly."""

import hashlib
import io
import json
import socket
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from apps.core.processes import start_time
from apps.pipelines import services as pipeline_services
from apps.pipelines.artifacts import bundle_store_put
from apps.projects.services import variable_set
from apps.releases.choices import DeploymentStatus
from apps.releases.deployers.process import STATE, SWITCH, ProcessDeployer, env_dir
from apps.releases.models import Deployment
from apps.releases.services import deployment_request, release_create

from .workers import Figures, beat, free_port, report, wait_until, worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Answers every path with its release; slow to start listening on the side ("candidate") or
# the real ("service") port when SLOW_ON says so, so that a kill lands mid-switch.
SERVER = b"""
import json, os, time
from http.server import BaseHTTPRequestHandler, HTTPServer
port = int(os.environ["PORT"])
where = "service" if port == int(os.environ["SERVICE_PORT"]) else "candidate"
if os.environ.get("SLOW_ON") == where:
    time.sleep(60)

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"release": os.environ["CONTROLPLANE_RELEASE"], "pid": os.getpid()})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())
    def log_message(self, *a):
        pass

HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def make_release(project, actor, version):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("server.py", SERVER), ("VERSION", version.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = Path(settings.JOB_LOG_DIR).parent / f"{version}.tar.gz"
    path.write_bytes(buf.getvalue())
    digest = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    bundle_store_put(path, digest)
    run = pipeline_services.run_create(
        project=project, actor=actor, jobs=[{"name": "t", "script": ["true"]}]
    )
    run.spec = {"serve": {"command": "python3 server.py", "health": "/healthz", "port": 8080}}
    run.save(update_fields=["spec"])
    return release_create(
        project=project,
        version=version,
        commit_sha=hashlib.sha1(version.encode()).hexdigest(),  # noqa: S324 - a fake sha
        actor=actor,
        pipeline_run=run,
        bundle_digest=digest,
    )


def answer(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return json.loads(r.read())["release"]
    except OSError:
        return None


class Sampler:
    """What answers on the service port, five times a second, from a thread."""

    def __init__(self, port):
        self.port, self.samples = port, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.samples.append((time.time(), answer(self.port)))
            time.sleep(0.2)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=3)
        return self.samples


def deploy(release, env, actor):
    deployment = deployment_request(release=release, environment=env, actor=actor)
    return wait_until(
        lambda: (
            (d := Deployment.objects.get(pk=deployment.pk)).status
            not in (DeploymentStatus.PENDING, DeploymentStatus.RUNNING)
            and d
        ),
        60,
    )


def alive(entry) -> bool:
    return start_time(entry["pid"]) == entry["pid_start"]


@pytest.fixture
def dev(project):
    env = project.environments.get(name="dev")
    env.deployer = "process"
    env.service_port = free_port(9350, 9399, socket.SOCK_STREAM)
    env.health_check_timeout = 20
    env.save()
    yield env
    ProcessDeployer().stop(project=project.slug, environment="dev")


@pytest.mark.parametrize("phase", ["candidate", "service"])
def test_kill_9_mid_switch_leaves_one_release_serving(project, admin_user, dev, procs, phase):
    started = time.monotonic()
    here = env_dir(Path(settings.CONTROLPLANE_DEPLOY_DIR), project.slug, "dev")
    variable_set(project=project, key="SERVICE_PORT", value=str(dev.service_port), actor=admin_user)
    first, second = make_release(project, admin_user, "v1"), make_release(project, admin_user, "v2")
    deployer_worker = procs(worker("deploy"))
    assert deploy(first, dev, admin_user).status == DeploymentStatus.SUCCEEDED
    assert answer(dev.service_port) == "v1"

    variable_set(project=project, key="SLOW_ON", value=phase, actor=admin_user)
    interrupted = deployment_request(release=second, environment=dev, actor=admin_user)
    sampler = Sampler(dev.service_port)
    # The switch has started the candidate (and, for "service", stopped v1 and started v2 on
    # the real port): the last process it started is listening late on purpose.
    wanted = 1 if phase == "candidate" else 2
    journal = wait_until(
        lambda: (
            (here / SWITCH).exists()
            and len((j := json.loads((here / SWITCH).read_text()))["started"]) == wanted
            and j
        ),
        40,
    )
    assert journal, Deployment.objects.get(pk=interrupted.pk).log
    time.sleep(0.5)
    deployer_worker.kill()
    killed_at = time.time()
    # The process the switch started last (the candidate was stopped once checked) outlives it.
    assert alive(journal["started"][-1]), "the switch's process should outlive the worker"

    # beat, and a worker that runs the sweeper and the supervisor (nobody else deploys).
    procs(beat())
    procs(worker("default,deploy", concurrency=2))
    failed = wait_until(
        lambda: (
            (d := Deployment.objects.get(pk=interrupted.pk)).status == DeploymentStatus.FAILED and d
        ),
        30,
    )
    assert failed and "worker lost" in failed.error_message
    recovered = wait_until(
        lambda: not (here / SWITCH).exists() and answer(dev.service_port) == "v1", 30
    )
    time.sleep(1)  # a few samples after the recovery
    samples = sampler.stop()
    after = [who for at, who in samples if at > killed_at]
    state = json.loads((here / STATE).read_text())
    orphans_left = sum(alive(e) for e in journal["started"] if e["pid"] != state["pid"])

    # The next deploy of v2 (not slow now) switches properly: still exactly one serves.
    variable_set(project=project, key="SLOW_ON", value="none", actor=admin_user)
    redeployed = deploy(second, dev, admin_user)
    serving_after_redeploy = answer(dev.service_port)
    v1_left = alive({"pid": state["pid"], "pid_start": state["pid_start"]})

    down = sum(who is None for who in after) * 0.2
    figures = Figures(
        f"kill -9 worker mid-deployment ({phase} phase, process deployer)",
        faults={"kill_9_worker": 1},
        expected={"deployments": 3},
        recorded={"deployments": Deployment.objects.filter(environment=dev).count()},
        completed={
            "deployments": Deployment.objects.filter(
                environment=dev, status__in=(DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED)
            ).count()
        },
        lost=0 if failed else 1,
        stuck=0 if recovered else 1,
        notes={
            "answered_after_kill": sorted({str(w) for w in after}),
            "down_s": round(down, 1),
            "orphans_left": orphans_left,
            "serving_after_recovery": state["release"],
            "serving_after_redeploy": serving_after_redeploy,
        },
        seconds=time.monotonic() - started,
    )
    report(figures)
    assert recovered, figures.line()
    assert state["release"] == "v1" and orphans_left == 0, figures.line()
    assert "v2" not in after, figures.line()  # never the interrupted release
    if phase == "candidate":
        assert None not in after, figures.line()  # v1 was never stopped
    assert redeployed.status == DeploymentStatus.SUCCEEDED, redeployed.error_message
    assert serving_after_redeploy == "v2" and not v1_left
