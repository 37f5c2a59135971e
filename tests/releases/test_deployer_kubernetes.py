"""The kubernetes deployer against a tiny Kubernetes API server run by the test.

No mock of the client: the real ``kubernetes`` package talks HTTP to ``FakeKubernetes`` on
127.0.0.1, which keeps Deployments and Services in memory the way the API server does (404
Status objects, resourceVersion conflicts, ``metadata.generation`` bumped on a spec change, the
revision annotation bumped on a template change) and plays the Deployment controller: a rollout
settles after a few reads, as available, or — for images listed in ``failing`` — never
available or past its progress deadline. Every request is recorded with its headers and body.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes.client import Configuration

from apps.releases.deployers import DeployError, DeployFailed, DeployRequest, get_deployer
from apps.releases.deployers import kubernetes as kube
from apps.releases.deployers.kubernetes import KubernetesDeployer, resource_name, rollout
from apps.releases.deployers.kubernetes.settings import cpu_quantity, memory_quantity

TOKEN = "s3cr3t-kube-token-value"
NAMESPACE = "ml"
NAME = "churn-model-production"
DEPLOYMENTS = re.compile(r"/apis/apps/v1/namespaces/([^/]+)/deployments(?:/([^/]+))?")
SERVICES = re.compile(r"/api/v1/namespaces/([^/]+)/services(?:/([^/]+))?")
PODS = re.compile(r"/api/v1/namespaces/([^/]+)/pods")


def _status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _merge(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


class FakeKubernetes:
    def __init__(self, token: str = TOKEN, polls_to_ready: int = 2):
        self.token = token
        self.polls_to_ready = polls_to_ready
        self.failing: dict[str, str] = {}  # image → "deadline" | "unavailable"
        self.forbid = False  # every request answers 403
        self.store: dict[tuple[str, str, str], dict] = {}  # (kind, namespace, name) → object
        self.polls: dict[tuple[str, str], int] = {}  # deployment → reads since its last change
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.version = 0

    # What the tests look at.

    def calls(self, method: str, kind: str = "deployments") -> list[dict]:
        return [r for r in self.requests if r["method"] == method and f"/{kind}" in r["path"]]

    def deployment(self, name: str = NAME) -> dict | None:
        return self.store.get(("deployments", NAMESPACE, name))

    def service(self, name: str = NAME) -> dict | None:
        return self.store.get(("services", NAMESPACE, name))

    # The server.

    def handle(self, method: str, handler: BaseHTTPRequestHandler) -> tuple[int, dict]:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self.lock:
            self.requests.append(
                {
                    "method": method,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "headers": {k.lower(): v for k, v in handler.headers.items()},
                    "content_type": handler.headers.get("Content-Type", ""),
                    "body": body,
                }
            )
            if handler.headers.get("Authorization") != f"Bearer {self.token}":
                return 401, _status(401, "Unauthorized", "Unauthorized")
            if self.forbid:
                return 403, _status(
                    403,
                    "Forbidden",
                    f'deployments.apps "{NAME}" is forbidden: User '
                    '"system:serviceaccount:ml:deployer" cannot get resource "deployments"',
                )
            for kind, pattern in (("deployments", DEPLOYMENTS), ("services", SERVICES)):
                match = pattern.fullmatch(url.path)
                if match:
                    return self._object(method, kind, match[1], match[2], body, handler)
            match = PODS.fullmatch(url.path)
            if match and method == "GET":
                return 200, self._pods(match[1], parse_qs(url.query))
            return 404, _status(404, "NotFound", "the server could not find the requested resource")

    def _object(self, method, kind, namespace, name, body, handler):
        if method == "POST":
            name = body["metadata"]["name"]
        key = (kind, namespace, name)
        stored = self.store.get(key)
        singular = kind[:-1]
        missing = _status(404, "NotFound", f'{kind} "{name}" not found')
        if method == "POST":
            if stored is not None:
                return 409, _status(409, "AlreadyExists", f'{kind} "{name}" already exists')
            obj = copy.deepcopy(body)
            obj.pop("status", None)
            meta = obj["metadata"]
            meta.update(namespace=namespace, uid=f"uid-{name}", generation=1)
            if kind == "deployments":
                meta.setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "1"
                obj["status"] = {}
                self.polls[(namespace, name)] = 0
            else:
                obj["spec"]["clusterIP"] = "10.0.0.10"
            return 201, self._save(key, obj)
        if stored is None:
            return 404, missing
        if method == "GET":
            if kind == "deployments":
                self._controller(namespace, name, stored)
            return 200, stored
        if method == "DELETE":
            del self.store[key]
            return 200, _status(200, "", f"{singular} deleted")
        if method == "PUT":
            if body["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]:
                return 409, _status(409, "Conflict", "the object has been modified")
            new = copy.deepcopy(body)
            new["status"] = stored.get("status", {})
        elif method == "PATCH":
            new = _merge(stored, body)
        else:
            return 405, _status(405, "MethodNotAllowed", method)
        new["metadata"].update(
            namespace=namespace,
            uid=stored["metadata"]["uid"],
            generation=stored["metadata"]["generation"],
        )
        if new.get("spec") != stored.get("spec"):
            new["metadata"]["generation"] += 1
            if kind == "deployments":
                self.polls[(namespace, name)] = 0
                new["status"] = {**stored.get("status", {}), "conditions": []}
                if new["spec"]["template"] != stored["spec"]["template"]:
                    revision = int(stored["metadata"]["annotations"][kube.REVISION_ANNOTATION])
                    new["metadata"]["annotations"][kube.REVISION_ANNOTATION] = str(revision + 1)
        if kind == "services":
            new["spec"]["clusterIP"] = stored["spec"]["clusterIP"]
        return 200, self._save(key, new)

    def _save(self, key, obj):
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.store[key] = obj
        return obj

    def _controller(self, namespace, name, deployment):
        """The Deployment controller, a few reads late."""
        meta, spec = deployment["metadata"], deployment["spec"]
        if deployment["status"].get("observedGeneration") == meta["generation"]:
            return
        self.polls[(namespace, name)] = self.polls.get((namespace, name), 0) + 1
        if self.polls[(namespace, name)] < self.polls_to_ready:
            return
        wanted = spec["replicas"]
        failing = self.failing.get(spec["template"]["spec"]["containers"][0]["image"])
        if failing is None:
            deployment["status"] = {
                "observedGeneration": meta["generation"],
                "replicas": wanted,
                "updatedReplicas": wanted,
                "readyReplicas": wanted,
                "availableReplicas": wanted,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                ],
            }
            return
        # maxSurge 1, maxUnavailable 0: one new pod that never gets ready, the old ones serve.
        progressing = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
        if failing == "deadline":
            progressing = {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": f'ReplicaSet "{name}-7d9f" has timed out progressing.',
            }
        deployment["status"] = {
            "observedGeneration": meta["generation"],
            "replicas": wanted + 1,
            "updatedReplicas": 1,
            "readyReplicas": wanted,
            "availableReplicas": wanted,
            "conditions": [progressing],
        }

    def _pods(self, namespace, query):
        wanted = dict(part.split("=", 1) for part in query["labelSelector"][0].split(","))
        items = []
        for (kind, ns, name), obj in self.store.items():
            template = obj.get("spec", {}).get("template", {}) if kind == "deployments" else {}
            labels = template.get("metadata", {}).get("labels", {})
            if ns != namespace or not wanted.items() <= labels.items():
                continue
            image = template["spec"]["containers"][0]["image"]
            waiting = {}
            if image in self.failing:
                waiting = {
                    "reason": "CrashLoopBackOff",
                    "message": "back-off 10s restarting failed container=app",
                }
            items.append(
                {
                    "metadata": {"name": f"{name}-7d9f-abcde", "labels": labels},
                    "status": {
                        "containerStatuses": [
                            {
                                "name": "app",
                                "image": image,
                                "ready": not waiting,
                                "restartCount": 3,
                                "state": {"waiting": waiting} if waiting else {"running": {}},
                                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}
                                if waiting
                                else {},
                            }
                        ]
                    },
                }
            )
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        status, payload = self.server.fake.handle(self.command, self)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # The client takes proxies from the environment; the fake server is on this machine.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake():
    fake = FakeKubernetes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def fast_polls(monkeypatch):
    monkeypatch.setattr(rollout, "POLL_INTERVAL", 0.05)


def make_request(fake, *, release="r1-aaaa1111", image="registry.local/churn:r1", **overrides):
    lines = overrides.pop("lines", [])
    target = {
        "api_url": fake.url,
        "namespace": NAMESPACE,
        "replicas": 2,
        "memory": "512Mi",
        "cpus": 0.5,
        "revision_history_limit": 3,
        **overrides.pop("target", {}),
    }
    fields = {
        "project": "churn-model",
        "environment": "production",
        "deployment_id": 41,
        "release": release,
        "commit_sha": "1a2b3c4d5e6f",
        "image_ref": image,
        "image_digest": "",
        "bundle_path": None,
        "bundle_digest": "",
        "port": 8123,
        "health_path": "/healthz",
        "health_timeout": 5,
        "command": "",
        "env": {"MODEL_NAME": "churn", "CONTROLPLANE_RELEASE": release},
        "target": target,
        "credentials": {kube.TOKEN_VARIABLE: TOKEN},
        "log": lines.append,
    }
    fields.update(overrides)
    return DeployRequest(**fields)


def test_first_deploy_creates_the_deployment_and_service_and_waits_for_the_rollout(
    fake, fast_polls
):
    lines: list[str] = []
    result = get_deployer("kubernetes").deploy(make_request(fake, lines=lines))

    assert result.url == f"http://{NAME}.{NAMESPACE}.svc:8123"
    assert all(r["headers"]["authorization"] == f"Bearer {TOKEN}" for r in fake.requests)
    assert all(
        r["path"].startswith("/api") and f"/{NAMESPACE}/" in r["path"] for r in fake.requests
    )

    [created] = fake.calls("POST")
    body = created["body"]
    assert created["path"] == f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
    assert body["metadata"]["name"] == NAME
    labels = body["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == NAME
    assert labels["controlplane.project"] == "churn-model"
    assert labels["controlplane.environment"] == "production"
    assert labels["controlplane.release"] == "r1-aaaa1111"
    assert body["metadata"]["annotations"]["controlplane.deployment-id"] == "41"
    assert body["metadata"]["annotations"]["controlplane.commit"] == "1a2b3c4d5e6f"
    spec = body["spec"]
    assert spec["replicas"] == 2
    assert spec["revisionHistoryLimit"] == 3
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    template_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= template_labels.items()
    [container] = spec["template"]["spec"]["containers"]
    assert container["image"] == "registry.local/churn:r1"
    env = {e["name"]: e["value"] for e in container["env"]}
    # HOST: in its pod the service listens on every address (the kubelet probes the pod's).
    assert env == {
        "MODEL_NAME": "churn",
        "CONTROLPLANE_RELEASE": "r1-aaaa1111",
        "HOST": "0.0.0.0",  # noqa: S104
        "PORT": "8123",
    }
    assert container["ports"] == [{"containerPort": 8123, "name": "http", "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": 8123}
    assert container["resources"]["limits"] == {"memory": "512Mi", "cpu": "500m"}
    assert container["resources"]["requests"] == {"memory": "512Mi", "cpu": "500m"}

    [service] = fake.calls("POST", "services")
    assert service["body"]["metadata"]["name"] == NAME
    assert service["body"]["spec"]["type"] == "ClusterIP"
    assert service["body"]["spec"]["ports"] == [
        {"name": "http", "port": 8123, "protocol": "TCP", "targetPort": 8123}
    ]
    assert service["body"]["spec"]["selector"] == spec["selector"]["matchLabels"]

    # It waited for the controller (a few reads) before saying it serves.
    assert len(fake.calls("GET")) >= 1 + fake.polls_to_ready
    assert any("waiting for rollout" in line for line in lines)
    assert result.details["generation"] == 1
    assert result.details["observed_generation"] == 1
    assert result.details["revision"] == "1"
    assert result.details["created"] is True
    assert result.details["timings"]["rollout_seconds"] >= 0


def test_a_second_deploy_replaces_the_deployment_instead_of_creating_it(fake, fast_polls):
    deployer = KubernetesDeployer()
    deployer.deploy(make_request(fake))
    result = deployer.deploy(
        make_request(
            fake,
            release="r2-bbbb2222",
            image="registry.local/churn:r2",
            deployment_id=42,
            target={"service_type": "NodePort"},
        )
    )

    assert len(fake.calls("POST")) == 1  # only the first deploy created it
    [replaced] = fake.calls("PUT")
    assert replaced["path"] == f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{NAME}"
    assert replaced["body"]["metadata"]["resourceVersion"]  # an update of what was read
    stored = fake.deployment()
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/churn:r2"
    assert stored["metadata"]["labels"]["controlplane.release"] == "r2-bbbb2222"
    assert result.details["generation"] == 2
    assert result.details["revision"] == "2"
    assert result.details["previous_release"] == "r1-aaaa1111"
    # The Service's type changed: a merge patch, whose ports list replaces the old one.
    assert len(fake.calls("POST", "services")) == 1
    [patched] = fake.calls("PATCH", "services")
    assert patched["content_type"] == "application/merge-patch+json"
    assert fake.service()["spec"]["type"] == "NodePort"
    assert fake.service()["spec"]["clusterIP"] == "10.0.0.10"


def test_a_failed_rollout_puts_the_previous_template_back(fake, fast_polls):
    deployer = KubernetesDeployer()
    deployer.deploy(make_request(fake))
    fake.failing["registry.local/churn:bad"] = "deadline"
    lines: list[str] = []

    with pytest.raises(DeployFailed) as caught:
        deployer.deploy(
            make_request(
                fake,
                release="r2-bad00000",
                image="registry.local/churn:bad",
                deployment_id=42,
                lines=lines,
            )
        )

    error = caught.value
    assert error.rolled_back is True
    message = str(error)
    assert "r2-bad00000 did not roll out" in message
    assert f'ReplicaSet "{NAME}-7d9f" has timed out progressing.' in message
    assert "CrashLoopBackOff" in message  # why, from the new pods
    assert "r1-aaaa1111 serves again" in message
    stored = fake.deployment()
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/churn:r1"
    assert stored["metadata"]["labels"]["controlplane.release"] == "r1-aaaa1111"
    assert (
        stored["spec"]["template"]["metadata"]["annotations"]["controlplane.deployment-id"] == "41"
    )
    # The bad template was applied (PUT), then the previous one (PUT again), and it rolled out.
    assert len(fake.calls("PUT")) == 2
    assert stored["status"]["availableReplicas"] == 2
    assert error.details["rollback"] == "restored"
    assert fake.calls("PATCH", "services") == []  # same port and type: the Service untouched
    assert any("rolling back to r1-aaaa1111" in line for line in lines)


def test_a_rollback_that_does_not_roll_out_either_is_not_called_rolled_back(fake, fast_polls):
    deployer = KubernetesDeployer()
    deployer.deploy(make_request(fake))
    fake.failing["registry.local/churn:r1"] = "unavailable"  # say, its node pool is gone
    fake.failing["registry.local/churn:bad"] = "unavailable"

    with pytest.raises(DeployError) as caught:
        deployer.deploy(
            make_request(
                fake, release="r2-bad00000", image="registry.local/churn:bad", health_timeout=1
            )
        )

    assert caught.value.rolled_back is False
    assert "(r1-aaaa1111) was put back but is not rolled out yet" in str(caught.value)
    assert caught.value.details["rollback"] == "incomplete"
    image = fake.deployment()["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.local/churn:r1"


def test_a_first_deploy_that_never_becomes_available_is_removed_within_the_timeout(fake):
    fake.failing["registry.local/churn:r1"] = "unavailable"
    started = time.monotonic()

    with pytest.raises(DeployFailed) as caught:
        KubernetesDeployer().deploy(make_request(fake, health_timeout=1))

    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 4.0
    assert caught.value.rolled_back is False  # nothing served before, nothing serves now
    assert "not rolled out within 1 s" in str(caught.value)
    assert "1 of 2 new replicas have been updated" in str(caught.value)
    # Nothing served before: what the deploy created is gone.
    assert fake.deployment() is None
    assert fake.service() is None
    assert caught.value.details["rollback"] == "deleted"


def test_a_kubeconfig_file_configures_this_deploy_only(fake, fast_polls, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(  # JSON is YAML
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "lab", "cluster": {"server": fake.url}}],
                "users": [{"name": "deployer", "user": {"token": TOKEN}}],
                "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "deployer"}}],
                "current-context": "lab",
            }
        )
    )
    target = {"api_url": "", "kubeconfig": str(kubeconfig)}
    default_host = Configuration.get_default_copy().host

    KubernetesDeployer().deploy(make_request(fake, credentials={}, target=target))

    assert fake.deployment() is not None
    assert all(r["headers"]["authorization"] == f"Bearer {TOKEN}" for r in fake.requests)
    # The client's global default configuration is not where it went.
    assert Configuration.get_default_copy().host == default_host != fake.url


def test_a_rejected_token_is_a_deploy_error_that_does_not_show_it(fake):
    fake.token = "another-token"

    with pytest.raises(DeployError) as caught:
        KubernetesDeployer().deploy(make_request(fake))

    assert not isinstance(caught.value, DeployFailed)
    message = str(caught.value)
    assert "401" in message and kube.TOKEN_VARIABLE in message
    assert TOKEN not in message
    assert TOKEN not in repr(caught.value.details)
    assert fake.calls("POST") == [] and fake.calls("POST", "services") == []


def test_missing_permissions_say_which_rbac_is_needed(fake):
    fake.forbid = True

    with pytest.raises(DeployError) as caught:
        KubernetesDeployer().deploy(make_request(fake))

    message = str(caught.value)
    assert "403" in message
    assert 'cannot get resource "deployments"' in message
    assert f"deployments and services in namespace {NAMESPACE}" in message


def test_an_unreachable_api_server_is_a_deploy_error(fake):
    with ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as closed:
        url = f"http://127.0.0.1:{closed.server_address[1]}"  # bound, never listening again

    with pytest.raises(DeployError) as caught:
        KubernetesDeployer().deploy(make_request(fake, target={"api_url": url}))

    assert f"Cannot reach the Kubernetes API at {url}" in str(caught.value)
    assert "refused" in str(caught.value).lower()


def test_a_deployment_the_control_plane_did_not_create_is_left_alone(fake):
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "resourceVersion": "1", "generation": 1},
        "spec": {
            "replicas": 1,
            "template": {"spec": {"containers": [{"name": "x", "image": "y"}]}},
        },
        "status": {},
    }
    fake.store[("deployments", NAMESPACE, NAME)] = foreign

    with pytest.raises(DeployError, match="did not create"):
        KubernetesDeployer().deploy(make_request(fake))

    assert [r["method"] for r in fake.requests] == ["GET"]


def test_status_reads_and_stop_deletes(fake, fast_polls):
    target = {"api_url": fake.url, "namespace": NAMESPACE}
    deployer = KubernetesDeployer(target=target, credentials={kube.TOKEN_VARIABLE: TOKEN})
    assert deployer.status(project="churn-model", environment="production") == {
        "running": False,
        "release": "",
    }
    deployer.deploy(make_request(fake))

    status = deployer.status(project="churn-model", environment="production")
    assert status["running"] is True
    assert status["release"] == "r1-aaaa1111"
    assert status["deployment_id"] == "41"
    assert status["image"] == "registry.local/churn:r1"
    assert status["available_replicas"] == 2
    assert status["rollout"] == "done"

    deployer.stop(project="churn-model", environment="production")
    assert fake.deployment() is None and fake.service() is None
    deployer.stop(project="churn-model", environment="production")  # nothing left: no error

    fake.token = "rotated"
    broken = deployer.status(project="churn-model", environment="production")
    assert broken["running"] is False and "401" in broken["error"]
    assert TOKEN not in broken["error"]


def test_bad_target_settings_are_refused_before_any_request(fake):
    for target, words in (
        ({"replicas": 0}, "replicas"),
        ({"memory": "lots"}, "memory"),
        ({"cpus": "many"}, "cpus"),
        ({"service_type": "Ingress"}, "service_type"),
        ({"namespace": "Not_A_Namespace"}, "namespace"),
    ):
        with pytest.raises(DeployError, match=words):
            KubernetesDeployer().deploy(make_request(fake, target=target))
    assert fake.requests == []


def test_names_are_dns_labels_and_distinct():
    assert resource_name("churn-model", "production") == "churn-model-production"
    cleaned = resource_name("churn-model", "EU Prod")
    assert re.fullmatch(r"churn-model-eu-prod-[0-9a-f]{8}", cleaned)
    assert resource_name("churn-model", "eu prod") != cleaned
    long = resource_name("p" * 50, "e" * 50)
    assert len(long) <= 63 and kube.DNS_LABEL.fullmatch(long)
    assert resource_name("9lives", "prod")[0].isalpha()


def test_docker_style_memory_is_binary_not_millibytes():
    assert memory_quantity("512m") == "512Mi"
    assert memory_quantity("1g") == "1Gi"
    assert memory_quantity("1Gi") == "1Gi"
    assert cpu_quantity(2) == "2000m"
    assert cpu_quantity("250m") == "250m"
