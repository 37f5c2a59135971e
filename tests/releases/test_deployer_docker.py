"""The docker deployer against a real engine (``scripts/docker_up.sh``) and a tiny image built here.

Skips without an engine, unless CI promised one (``CONTROLPLANE_REQUIRE_DOCKER=1``): then it fails.
"""

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker.client import DockerClient
from docker.errors import NotFound

from apps.releases.deployers import DeployError, DeployFailed, DeployRequest, get_deployer
from apps.releases.deployers.docker import DockerDeployer, container_name
from apps.releases.deployers.health import free_port
from tests.dockerengine import IMAGE, docker_client

pytestmark = pytest.mark.docker

# The project of every container these tests start (its controlplane.project label).
PROJECT = f"pytest-{uuid.uuid4().hex[:8]}"
ENV = "production"
TAG = f"cp-test-deployer:{PROJECT}"

# Answers /healthz with the release baked into the image, 503 when FAIL_HEALTH is set; exits at
# once with a message when CRASH is set. Listens where HOST says (as the example's model.serve).
SERVER = """\
import http.server, json, os, sys
if os.environ.get("CRASH"):
    print("boom: the model file is missing", flush=True)
    sys.exit(3)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/healthz" and not os.environ.get("FAIL_HEALTH")
        body = json.dumps({"release": os.environ["RELEASE"], "port": os.environ["PORT"]}).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

address = (os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"]))
http.server.ThreadingHTTPServer(address, Handler).serve_forever()
"""
DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim
FROM $BASE_IMAGE
ARG RELEASE
ARG FAIL_HEALTH=""
ENV RELEASE=$RELEASE FAIL_HEALTH=$FAIL_HEALTH PYTHONUNBUFFERED=1
COPY server.py /app/server.py
CMD ["python3", "/app/server.py"]
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Iterator[DockerClient]:
    client = docker_client()
    context = tmp_path_factory.mktemp("image")
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "server.py").write_text(SERVER)
    try:
        for release, fail in (("v1", ""), ("v2", ""), ("v3", "1")):
            client.images.build(
                path=str(context),
                tag=f"{TAG}-{release}",
                buildargs={"BASE_IMAGE": IMAGE, "RELEASE": release, "FAIL_HEALTH": fail},
                rm=True,
            )
        yield client
    finally:
        leftovers = ours(client)
        for container in leftovers:
            container.remove(force=True)
        for release in ("v1", "v2", "v3"):
            try:
                client.images.remove(f"{TAG}-{release}", force=True)
            except NotFound:
                pass
        client.close()
    assert not leftovers, [c.name for c in leftovers]


def ours(client: DockerClient) -> list:
    return client.containers.list(all=True, filters={"label": f"controlplane.project={PROJECT}"})


@pytest.fixture
def deployer(engine) -> Iterator[DockerDeployer]:
    deployer = DockerDeployer()
    yield deployer
    deployer.stop(project=PROJECT, environment=ENV)
    assert ours(engine) == []


def make_request(release: str, port: int | None, **changes) -> DeployRequest:
    values = {
        "project": PROJECT,
        "environment": ENV,
        "deployment_id": int(time.monotonic_ns() % 1_000_000),
        "release": release,
        "commit_sha": "1a2b3c4d" * 5,
        "image_ref": f"{TAG}-{release}",
        "image_digest": "",
        "bundle_path": None,
        "bundle_digest": "",
        "port": port,
        "health_path": "/healthz",
        "health_timeout": 15,
        "command": "",
        "log": lambda line: None,
        **changes,
    }
    return DeployRequest(**values)


def get(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:  # noqa: S310
        return json.loads(resp.read())


def test_get_deployer_knows_docker():
    assert isinstance(get_deployer("docker"), DockerDeployer)


def test_deploy_replace_and_roll_back(engine, deployer):
    port = free_port()
    target = {"memory": "256m", "cpus": 0.5, "pids_limit": 128}
    v1 = deployer.deploy(make_request("v1", port, target=target, env={"GREETING": "hi"}))
    assert v1.url == f"http://127.0.0.1:{port}"
    assert get(port) == {"release": "v1", "port": str(port)}
    [container] = ours(engine)
    assert container.id == v1.details["container_id"]
    assert container.name == container_name(PROJECT, ENV) == f"cp-{PROJECT}-{ENV}"
    assert container.image.id == v1.details["image_id"]
    assert v1.details["candidate_healthy_seconds"] < 15
    assert v1.details["switch_gap_seconds"] < 15
    labels = container.labels
    assert labels["controlplane.project"] == PROJECT
    assert labels["controlplane.environment"] == ENV
    assert labels["controlplane.release"] == "v1"
    assert labels["controlplane.commit"] == "1a2b3c4d" * 5
    assert "controlplane.deployment" in labels
    host = container.attrs["HostConfig"]
    assert host["NetworkMode"] == "host"
    assert host["Init"] is True
    assert host["Memory"] == 256 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 128
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert {"GREETING=hi", f"PORT={port}"} <= set(container.attrs["Config"]["Env"])

    v2 = deployer.deploy(make_request("v2", port))
    assert get(port)["release"] == "v2"
    assert [c.id for c in ours(engine)] == [v2.details["container_id"]]
    with pytest.raises(NotFound):
        engine.containers.get(v1.details["container_id"])
    assert v2.details["previous_release"] == "v1"
    v2_started = engine.containers.get(v2.details["container_id"]).attrs["State"]["StartedAt"]

    # v3 never becomes healthy on its side port: removed, v2 never stopped.
    with pytest.raises(DeployFailed) as failed:
        deployer.deploy(make_request("v3", port, health_timeout=3))
    assert failed.value.rolled_back is True
    assert "HTTP 503" in str(failed.value)
    [container] = ours(engine)
    assert container.id == v2.details["container_id"]
    assert container.attrs["State"]["StartedAt"] == v2_started
    assert get(port)["release"] == "v2"

    # Without the side port, v2 is stopped for v3 and started again when v3 fails.
    with pytest.raises(DeployFailed) as failed:
        deployer.deploy(make_request("v3", port, health_timeout=3, target={"verify_first": False}))
    assert failed.value.rolled_back is True
    assert "serves again" in str(failed.value)
    [container] = ours(engine)
    assert container.id == v2.details["container_id"]
    assert container.name == f"cp-{PROJECT}-{ENV}"
    assert container.attrs["State"]["StartedAt"] != v2_started
    assert get(port)["release"] == "v2"
    status = deployer.status(project=PROJECT, environment=ENV)
    assert (status["running"], status["release"]) == (True, "v2")

    deployer.stop(project=PROJECT, environment=ENV)
    assert ours(engine) == []
    assert deployer.status(project=PROJECT, environment=ENV) == {"running": False, "release": ""}


def test_a_crash_at_start_fails_fast_with_its_output(engine, deployer):
    started = time.monotonic()
    with pytest.raises(DeployFailed) as failed:
        deployer.deploy(make_request("v1", free_port(), env={"CRASH": "1"}, health_timeout=60))
    assert time.monotonic() - started < 15
    message = str(failed.value)
    assert "exited with code 3" in message
    assert "boom: the model file is missing" in message
    assert ours(engine) == []


def test_clear_errors(engine, deployer, monkeypatch, tmp_path: Path):
    with pytest.raises(DeployError, match="no service port"):
        deployer.deploy(make_request("v1", None))
    with pytest.raises(DeployError, match="not on the Docker host"):
        deployer.deploy(make_request("v1", free_port(), image_ref=f"{TAG}-missing"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(DeployError, match="cannot be reached"):
        deployer.deploy(make_request("v1", free_port()))
    assert "error" in deployer.status(project=PROJECT, environment=ENV)
    monkeypatch.undo()
    assert ours(engine) == []


def answers(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5):  # noqa: S310
            return True
    except OSError:
        return False


def test_the_container_listens_on_loopback_unless_the_environment_says_otherwise(engine, deployer):
    port = free_port()
    v1 = deployer.deploy(make_request("v1", port))
    container = engine.containers.get(v1.details["container_id"])
    assert "HOST=127.0.0.1" in container.attrs["Config"]["Env"]
    assert answers("127.0.0.1", port)
    assert not answers("127.0.0.2", port)  # host networking, but not every address

    v2 = deployer.deploy(make_request("v2", port, target={"host": "127.0.0.2"}))
    assert v2.url == f"http://127.0.0.2:{port}"
    container = engine.containers.get(v2.details["container_id"])
    assert "HOST=127.0.0.2" in container.attrs["Config"]["Env"]
    assert container.labels["controlplane.host"] == "127.0.0.2"
    assert answers("127.0.0.2", port)
    assert not answers("127.0.0.1", port)

    # v3 fails (after v2 was stopped): v2 serves again where it listened.
    with pytest.raises(DeployFailed) as failed:
        deployer.deploy(make_request("v3", port, health_timeout=3, target={"verify_first": False}))
    assert failed.value.rolled_back is True
    assert "The previous release v2 serves again" in str(failed.value)
    assert answers("127.0.0.2", port)
