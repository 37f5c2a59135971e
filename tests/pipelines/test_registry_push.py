"""``push_image`` against a real Docker engine and a registry served by the test itself
(``tests/pipelines/registry.py``, a stdlib Registry HTTP API v2 server on 127.0.0.1).

The engine treats 127.0.0.0/8 registries as insecure (plain HTTP) by default; the tests check
that first, since without it no push to a loopback registry can work.
"""

import gzip
import io
import ipaddress
import json
import tarfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator

import pytest
from docker.errors import DockerException

from apps.pipelines.builder import BuildError, build_from_context, push_image
from apps.releases.deployers.health import free_port

from ..dockerengine import IMAGE, docker_client
from .registry import MANIFEST_V2, Registry, sha256

pytestmark = pytest.mark.docker

PROJECT = "churn"
PUSH_TIMEOUT = 150  # seconds; a push that takes longer counts as a hang
DOCKERFILE = "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\nCOPY stamp.txt /stamp.txt\n"


class Log:
    """The part of ``LogWriter`` that ``push_image`` uses, collecting the output."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.data = bytearray()

    def line(self, text: str) -> None:
        self.lines.append(text)

    def write(self, data: bytes) -> None:
        self.data += data

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n" + self.data.decode(errors="replace")


@pytest.fixture(scope="module")
def engine():

    client = docker_client()
    cidrs = client.info().get("RegistryConfig", {}).get("InsecureRegistryCIDRs") or []
    loopback = ipaddress.ip_address("127.0.0.1")
    if not any(loopback in ipaddress.ip_network(c, strict=False) for c in cidrs):
        pytest.fail(
            f"the engine does not treat 127.0.0.1 registries as insecure (plain HTTP): "
            f"InsecureRegistryCIDRs={cidrs}; a loopback test registry cannot be pushed to"
        )
    yield client
    client.close()


@pytest.fixture
def image(engine, settings) -> Iterator[str]:
    """A tiny image with a layer of its own on top of the base; every tag of it is removed
    afterwards (the test adds the registry tags)."""
    settings.CONTROLPLANE_BUILD_BASE_IMAGE = IMAGE
    stamp = uuid.uuid4().hex[:12]
    tag = f"controlplane/pytest-push-{stamp}:v{stamp}"
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, text in (("Dockerfile", DOCKERFILE), ("stamp.txt", f"{stamp}\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    buf.seek(0)
    log = Log()
    image_id = None
    try:
        image_id = build_from_context(
            context=buf, tag=tag, labels={"controlplane.project": "pytest"}, write=log.write
        )
        yield tag
    finally:
        refs = set()
        if image_id:
            try:
                refs.update(engine.images.get(image_id).tags)
            except DockerException:
                pass
        for ref in refs | {tag}:
            try:
                engine.images.remove(ref, force=True)
            except DockerException:
                pass


def bounded(fn: Callable[[], dict], timeout: float = PUSH_TIMEOUT) -> dict:
    """Run ``fn`` in a thread; fail the test if it has not returned within ``timeout``."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"push_image did not return within {timeout}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def check_pushed(registry: Registry, engine, image: str, project: str, result: dict) -> bytes:
    """The push of ``image`` as ``ml/<project>:<version>`` is complete and consistent;
    returns the stored manifest body."""
    version = image.rsplit(":", 1)[1]
    repository = f"{registry.host}/ml/{project}"
    # What was pushed: the tag reference ml/<project>:<version>, and its manifest.
    assert result["pushed"] == f"{repository}:{version}"
    assert ("PUT", f"/v2/ml/{project}/manifests/{version}", 201) in registry.requests
    body = registry.manifests[f"ml/{project}"][version]
    digest = sha256(body)
    assert result["repo_digest"] == f"{repository}@{digest}"

    # Every blob the manifest references was received, and its bytes hash to its digest.
    manifest = json.loads(body)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == MANIFEST_V2
    assert len(manifest["layers"]) >= 2  # the base image's layer and ours
    for desc in [manifest["config"], *manifest["layers"]]:
        assert desc["digest"] in registry.repo_blobs[f"ml/{project}"], desc
        data = registry.blobs[desc["digest"]]
        assert sha256(data) == desc["digest"]
        assert len(data) == desc["size"]
    # The config is the image's own: its digest is the local image id, one diff per layer.
    local = engine.images.get(image)
    assert manifest["config"]["digest"] == local.id
    config = json.loads(registry.blobs[local.id])
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])
    # Our layer holds the stamp file: the uncompressed bytes of the last layer.
    top = gzip.decompress(registry.blobs[manifest["layers"][-1]["digest"]])
    with tarfile.open(fileobj=io.BytesIO(top)) as tar:
        assert tar.extractfile("stamp.txt").read().decode().strip() == version[1:]

    # The engine agrees on the digest, and the registry serves the manifest back under it.
    assert result["repo_digest"] in local.attrs["RepoDigests"]
    assert f"{repository}:{version}" in local.tags
    for reference in (version, digest):
        url = f"http://{registry.host}/v2/ml/{project}/manifests/{reference}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.read() == body
            assert resp.headers["Docker-Content-Digest"] == digest
    return body


def test_push_image_to_a_registry(engine, image, settings):
    with Registry() as registry:
        settings.CONTROLPLANE_REGISTRY = f"{registry.host}/ml"
        log = Log()
        started = time.monotonic()
        result = bounded(lambda: push_image(tag=image, project=PROJECT, log=log))
        elapsed = time.monotonic() - started
        body = check_pushed(registry, engine, image, PROJECT, result)
        assert set(registry.manifests) == {f"ml/{PROJECT}"}
        assert log.lines == [
            f"pushing {result['pushed']}",
            f"pushed {result['repo_digest']}",
        ]
        print(f"push of {len(json.loads(body)['layers'])} layers took {elapsed:.1f}s")


def test_push_to_a_refusing_registry_is_a_build_error(image, settings):
    port = free_port()  # a loopback port nothing listens on
    settings.CONTROLPLANE_REGISTRY = f"127.0.0.1:{port}/ml"
    started = time.monotonic()
    with pytest.raises(BuildError) as caught:
        bounded(lambda: push_image(tag=image, project=PROJECT, log=Log()))
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith("docker push failed: "), message
    assert f"127.0.0.1:{port}" in message and "connection refused" in message, message
    print(f"refusing registry: {message!r} after {elapsed:.1f}s")
