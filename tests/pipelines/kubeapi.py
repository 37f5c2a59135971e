"""A tiny Kubernetes API server for the kubernetes runner's tests, run on 127.0.0.1.

It keeps Jobs, Secrets and pods in memory the way the API server does (404 Status objects, uids,
merge patches) and plays the Job controller and the kubelet: a Job gets one pod, labelled from
the Job's template, that "runs" a little program chosen by the Job's image — output written over
time, pauses, an exit code — so the real ``kubernetes`` client can follow its log
(``follow=true``, chunked) while it runs. Deleting the Job kills the pod. Every request is
recorded with its query, headers and body.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOKEN = "kube-runner-t0ken-value"
JOBS = re.compile(r"/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?")
SECRETS = re.compile(r"/api/v1/namespaces/([^/]+)/secrets(?:/([^/]+))?")
PODS = re.compile(r"/api/v1/namespaces/([^/]+)/pods")
POD_LOG = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log")


def status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class Program:
    """What a pod of an image does: ``steps`` are bytes to print, a float to sleep, or an Event
    to wait for (at most 20 s); then it exits with ``exit_code``. ``waiting`` keeps the container
    waiting with that reason for good; ``unschedulable`` reads say "no node" first."""

    steps: list = field(default_factory=list)
    exit_code: int = 0
    waiting: str = ""
    unschedulable: int = 0
    oom: bool = False


class Pod:
    def __init__(self, name: str, namespace: str, labels: dict, program: Program):
        self.name, self.namespace, self.labels, self.program = name, namespace, labels, program
        self.output = b""
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.changed = threading.Condition()
        self.killed = threading.Event()
        self.reads = 0
        self.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def run(self, on_exit) -> None:
        program = self.program
        if program.waiting:
            self.state = {"waiting": {"reason": program.waiting, "message": "it will not start"}}
            return
        while self.reads < program.unschedulable and not self.killed.is_set():
            time.sleep(0.02)
        time.sleep(0.05)
        self._set({"running": {"startedAt": self.created}})
        code = program.exit_code
        for step in program.steps:
            if self.killed.is_set():
                break
            if isinstance(step, bytes):
                with self.changed:
                    self.output += step
                    self.changed.notify_all()
            elif isinstance(step, threading.Event):
                deadline = time.monotonic() + 20
                while not (step.is_set() or self.killed.is_set()) and time.monotonic() < deadline:
                    step.wait(0.02)
            else:
                self.killed.wait(step)
        if self.killed.is_set():
            code = 137
        reason = "OOMKilled" if program.oom else ("Completed" if code == 0 else "Error")
        self._set({"terminated": {"exitCode": code, "reason": reason}})
        on_exit(self, code)

    def _set(self, state: dict) -> None:
        with self.changed:
            self.state = state
            self.changed.notify_all()

    def as_dict(self) -> dict:
        self.reads += 1
        conditions = []
        if self.reads <= self.program.unschedulable:
            conditions.append(
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            )
        phase = "Pending"
        if "running" in self.state:
            phase = "Running"
        elif "terminated" in self.state:
            phase = "Succeeded" if self.state["terminated"]["exitCode"] == 0 else "Failed"
        return {
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": self.labels,
                "creationTimestamp": self.created,
            },
            "status": {
                "phase": phase,
                "conditions": conditions,
                "containerStatuses": [{"name": "job", "state": copy.deepcopy(self.state)}],
            },
        }


class FakeKubernetes:
    def __init__(self, token: str = TOKEN):
        self.token = token
        self.programs: dict[str, Program] = {}  # image → what its pod does
        self.forbid: set[str] = set()  # "POST jobs": answer 403
        self.jobs: dict[tuple[str, str], dict] = {}
        self.secrets: dict[tuple[str, str], dict] = {}
        self.pods: dict[str, Pod] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.uids = 0

    # What the tests look at.

    def calls(self, method: str, kind: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and f"/{kind}" in r["path"]]

    # The server.

    def handle(self, method: str, handler: BaseHTTPRequestHandler) -> tuple[int, dict] | None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        query = parse_qs(url.query)
        with self.lock:
            self.requests.append(
                {
                    "method": method,
                    "path": url.path,
                    "query": query,
                    "headers": {k.lower(): v for k, v in handler.headers.items()},
                    "body": body,
                }
            )
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, status(401, "Unauthorized", "Unauthorized")
        kind = next((k for k in ("jobs", "secrets", "pods") if f"/{k}" in url.path), "")
        if f"{method} {kind}" in self.forbid:
            return 403, status(
                403,
                "Forbidden",
                f'{kind}.batch is forbidden: User "system:serviceaccount:ci:runner" cannot '
                f"create resource {kind!r}",
            )
        if match := POD_LOG.fullmatch(url.path):
            self._log(handler, self.pods.get(match[2]), query)
            return None
        if match := PODS.fullmatch(url.path):
            wanted = dict(p.split("=", 1) for p in query["labelSelector"][0].split(","))
            items = [
                pod.as_dict()
                for pod in list(self.pods.values())
                if pod.namespace == match[1] and wanted.items() <= pod.labels.items()
            ]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        if match := JOBS.fullmatch(url.path):
            return self._job(method, match[1], match[2], body)
        if match := SECRETS.fullmatch(url.path):
            return self._secret(method, match[1], match[2], body)
        return 404, status(404, "NotFound", "the server could not find the requested resource")

    def _uid(self) -> str:
        self.uids += 1
        return f"uid-{self.uids}"

    def _job(self, method, namespace, name, body):
        if method == "POST":
            name = body["metadata"]["name"]
            if (namespace, name) in self.jobs:
                return 409, status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
            job = copy.deepcopy(body)
            job["metadata"].update(namespace=namespace, uid=self._uid())
            job["status"] = {}
            self.jobs[(namespace, name)] = job
            template = job["spec"]["template"]
            image = template["spec"]["containers"][0]["image"]
            pod = Pod(
                f"{name}-x7k2p",
                namespace,
                {**template["metadata"]["labels"], "job-name": name},
                self.programs.get(image, Program()),
            )
            self.pods[pod.name] = pod
            threading.Thread(target=pod.run, args=(self._pod_exited,), daemon=True).start()
            return 201, job
        job = self.jobs.get((namespace, name))
        if job is None:
            return 404, status(404, "NotFound", f'jobs.batch "{name}" not found')
        if method == "GET":
            return 200, job
        if method == "DELETE":
            del self.jobs[(namespace, name)]
            for pod in [p for p in self.pods.values() if p.labels.get("job-name") == name]:
                pod.killed.set()
                self.pods.pop(pod.name, None)
            for key, secret in list(self.secrets.items()):
                owners = secret["metadata"].get("ownerReferences") or []
                if any(o["uid"] == job["metadata"]["uid"] for o in owners):
                    del self.secrets[key]  # the garbage collector
            return 200, status(200, "", "job deleted")
        return 405, status(405, "MethodNotAllowed", method)

    def _pod_exited(self, pod: Pod, code: int) -> None:
        job = self.jobs.get((pod.namespace, pod.labels["job-name"]))
        if job is not None and not pod.killed.is_set():
            condition = {"type": "Complete", "status": "True"}
            if code:
                condition = {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            job["status"] = {"conditions": [condition], "failed" if code else "succeeded": 1}

    def _secret(self, method, namespace, name, body):
        if method == "POST":
            name = body["metadata"]["name"]
            secret = copy.deepcopy(body)
            secret["metadata"].update(namespace=namespace, uid=self._uid())
            self.secrets[(namespace, name)] = secret
            return 201, secret
        secret = self.secrets.get((namespace, name))
        if secret is None:
            return 404, status(404, "NotFound", f'secrets "{name}" not found')
        if method == "PATCH":
            secret["metadata"].update(body["metadata"])
            return 200, secret
        if method == "DELETE":
            del self.secrets[(namespace, name)]
            return 200, status(200, "", "secret deleted")
        return 200, secret

    def _log(self, handler: BaseHTTPRequestHandler, pod: Pod | None, query: dict) -> None:
        if pod is None:
            data = json.dumps(status(404, "NotFound", "pod not found")).encode()
            handler.send_response(404)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        follow = query.get("follow") == ["true"]
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        sent = 0
        while True:
            with pod.changed:
                if len(pod.output) == sent and follow and "terminated" not in pod.state:
                    pod.changed.wait(0.05)
                data, done = pod.output[sent:], "terminated" in pod.state or pod.killed.is_set()
            if data:
                handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                handler.wfile.flush()
                sent += len(data)
            elif done or not follow:
                break
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        answer = self.server.fake.handle(self.command, self)
        if answer is None:  # a streamed answer, already sent
            return
        code, payload = answer
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, *args) -> None:  # quiet
        pass


def start(fake: FakeKubernetes) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.fake = fake
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server
