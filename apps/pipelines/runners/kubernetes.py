"""The kubernetes runner: the job's script as a ``batch/v1`` Job in a cluster, through the
official client, configured like the kubernetes deployer (``settings.CONTROLPLANE_KUBE_RUNNER``,
see docs/workers.md).

For every job the runner:

1. puts the job's secret values (``RunRequest.secrets``) in a Secret of their own, referenced by
   ``secretKeyRef`` — the Job's manifest, which anyone allowed to read Jobs sees, holds none;
2. creates the Job: the job's image, the script under ``bash -eo pipefail -c``, the rest of the
   job environment as plain ``env``, ``resources`` as requests / limits (``nvidia.com/gpu`` for
   GPUs), labels with the project, run and job (ids and names), ``backoffLimit: 0`` (an attempt
   is the control plane's to make), ``ttlSecondsAfterFinished`` and ``activeDeadlineSeconds``
   (the cluster stops it even when this worker is gone); then makes the Job the Secret's owner,
   so the cluster's garbage collector removes the Secret with the Job;
3. waits for the pod; says in the job log why it waits (unschedulable: "0/3 nodes have
   nvidia.com/gpu"; pulling) and gives up on what waiting cannot fix (a bad image name, an image
   that cannot be pulled, a broken container config);
4. follows the pod's log (``follow=true``) into the job log as it arrives;
5. takes the exit code from the pod's terminated container state (or the Job's ``Failed``
   condition when the pod never ran);
6. on cancel or timeout deletes the Job with ``propagationPolicy: Foreground`` (its pod goes
   first); after a normal end deletes it too (the kubelet keeps the pod's unmasked output as long
   as the pod exists), and the Secret whatever happened.

There is no checkout in the pod unless ``workspace_claim`` names a ReadWriteMany
PersistentVolumeClaim that holds this worker's ``WORKSPACE_DIR``: then the job's workspace is
mounted at ``/workspace`` from it (``subPath``) and is the working directory. Without it the
script runs in the image alone — what the job needs must be in the image or fetched by the
script, and files it writes (reports, artifacts, a model) do not come back to the worker.
"""

from __future__ import annotations

import base64
import queue
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import urllib3
from django.conf import settings
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from apps.core.kube import (
    RAW,
    REQUEST_TIMEOUT,
    KubeConfigError,
    client_configuration,
    label_value,
    missing_is_none,
    response_json,
    status_message,
)

from ..resources import kube_cpu, kube_memory
from . import RunOutcome, RunRequest
from .docker import ENV_LABELS, HOST_ONLY_ENV, NAME_PARTS
from .local import KILL_GRACE_SECONDS, _sh_quote

CONTAINER = "job"
WORKDIR = "/workspace"
GPU_RESOURCE = "nvidia.com/gpu"
POLL_INTERVAL = 0.5  # seconds between reads of the Job and its pod
CHUNK = 256 * 1024
# The cluster's own deadline comes this long after the runner's timeout and grace period.
BACKSTOP_SECONDS = 60
# How long the API may keep failing (5xx, connection refused) before the job gives up on it.
API_PATIENCE_SECONDS = 30
MAX_LOG_RECONNECTS = 5
# A log stream that ended while the pod still says "running" for this long was cut, not done.
LOG_CUT_AFTER = 5.0
USER_AGENT = "controlplane-runner"
MANAGED_BY = "controlplane"
L_MANAGED_BY = "app.kubernetes.io/managed-by"
L_RUNNER = "controlplane.runner"
L_KUBE_JOB = "controlplane.kube-job"  # on the pod template: selects the Job's pods
ID_LABELS = {
    "controlplane.project-id": "project_id",
    "controlplane.run-id": "run_id",
    "controlplane.job-id": "job_id",
}
# Waiting reasons that waiting does not fix.
HOPELESS = {
    "InvalidImageName": "the image name is not valid",
    "ErrImageNeverPull": "the image is not on the node and its pull policy is Never",
    "ImagePullBackOff": "the cluster cannot pull the image",
    "CreateContainerConfigError": "the container's configuration is broken",
    "CreateContainerError": "the container could not be created",
}
SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError)
API_ERRORS = (ApiException, *NETWORK_ERRORS)
_EOF = object()


class KubeRunnerError(Exception):
    """The cluster or the runner's settings, not the job's script; the message is for the job."""


class KubernetesRunner:
    name = "kubernetes"

    def run(self, req: RunRequest) -> RunOutcome:
        try:
            config = runner_settings()
            api = Api(config, settings.CONTROLPLANE_KUBE_RUNNER_TOKEN)
        except KubeRunnerError as exc:
            return RunOutcome(exit_code=None, error=str(exc))
        try:
            return Execution(api, config, req).run()
        except KubeRunnerError as exc:
            return RunOutcome(exit_code=None, error=str(exc))
        finally:
            api.close()


def runner_settings() -> dict[str, Any]:
    config = dict(getattr(settings, "CONTROLPLANE_KUBE_RUNNER", {}) or {})
    namespace = str(config.get("namespace") or "default")
    if len(namespace) > 63 or not DNS_LABEL.fullmatch(namespace):
        raise KubeRunnerError(f"CONTROLPLANE_KUBE_RUNNER_NAMESPACE {namespace!r} is not valid.")
    policy = config.get("image_pull_policy") or ""
    if policy and policy not in ("Always", "IfNotPresent", "Never"):
        raise KubeRunnerError(
            "CONTROLPLANE_KUBE_RUNNER_IMAGE_PULL_POLICY must be Always, IfNotPresent or Never."
        )
    return {**config, "namespace": namespace, "ttl_seconds": int(config.get("ttl_seconds") or 0)}


class Api:
    """The calls the runner makes, in the wire format (plain dicts), errors explained."""

    def __init__(self, config: dict[str, Any], token: str):
        try:
            configuration = client_configuration(config, token)
        except KubeConfigError as exc:
            raise KubeRunnerError(
                f"Cannot configure the Kubernetes client from {exc.where} ({exc.cause}). Set "
                "CONTROLPLANE_KUBE_RUNNER_API_URL and _TOKEN (or _TOKEN_FILE), or _KUBECONFIG."
            ) from None
        self.host, self.token, self.namespace = configuration.host, token, config["namespace"]
        self.api_client = client.ApiClient(configuration)
        self.api_client.user_agent = USER_AGENT
        self.batch = client.BatchV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)

    def close(self) -> None:
        self.api_client.close()

    def create_secret(self, body: dict) -> dict:
        model = client.V1Secret.from_dict(body)
        return response_json(self.core.create_namespaced_secret(self.namespace, model, **RAW))

    def own_secret(self, name: str, job: dict) -> None:
        meta = job["metadata"]
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"]}
        patch = {"metadata": {"ownerReferences": [owner]}}
        response_json(
            self.core.patch_namespaced_secret(
                name, self.namespace, patch, _content_type="application/merge-patch+json", **RAW
            )
        )

    def delete_secret(self, name: str) -> None:
        missing_is_none(lambda: self.core.delete_namespaced_secret(name, self.namespace, **RAW))

    def create_job(self, body: dict) -> dict:
        model = client.V1Job.from_dict(body)
        return response_json(self.batch.create_namespaced_job(self.namespace, model, **RAW))

    def read_job(self, name: str) -> dict | None:
        return missing_is_none(lambda: self.batch.read_namespaced_job(name, self.namespace, **RAW))

    def delete_job(self, name: str, propagation: str) -> None:
        missing_is_none(
            lambda: self.batch.delete_namespaced_job(
                name, self.namespace, propagation_policy=propagation, **RAW
            )
        )

    def pods(self, job_name: str) -> list[dict]:
        response = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{L_KUBE_JOB}={job_name}", **RAW
        )
        return response_json(response).get("items") or []

    def follow_log(self, pod: str, *, since_seconds: int | None, read_timeout: float) -> Any:
        return self.core.read_namespaced_pod_log(
            pod,
            self.namespace,
            container=CONTAINER,
            follow=True,
            since_seconds=since_seconds,
            _preload_content=False,
            _request_timeout=(REQUEST_TIMEOUT[0], max(1.0, read_timeout)),
        )

    def explain(self, exc: BaseException, doing: str) -> KubeRunnerError:
        where = f"the Kubernetes API at {self.host}"
        if isinstance(exc, ApiException):
            said = status_message(exc)
            if exc.status == 401:
                message = (
                    f"{where} refused the credentials (401) while {doing}: set a valid token in "
                    "CONTROLPLANE_KUBE_RUNNER_TOKEN."
                )
            elif exc.status == 403:
                message = (
                    f"{where} forbids it (403) while {doing}: {said}. The runner's service "
                    "account needs create, get, list, patch and delete on jobs, pods, pods/log "
                    f"and secrets in namespace {self.namespace} (see docs/workers.md)."
                )
            elif exc.status == 0:
                message = f"TLS with {where} failed while {doing}: {exc.reason}"
            else:
                message = f"{where} answered {exc.status} {exc.reason} while {doing}: {said}"
        else:
            message = f"Cannot reach {where} while {doing}: {getattr(exc, 'reason', exc)}"
        message = message[0].upper() + message[1:]
        return KubeRunnerError(message.replace(self.token, "***") if self.token else message)


class Execution:
    """One job's Job: created, watched, its log followed, deleted."""

    def __init__(self, api: Api, config: dict[str, Any], req: RunRequest):
        self.api, self.config, self.req = api, config, req
        self.name = job_name(req)
        self.secret = f"{self.name}-env" if _secret_env(req) else ""
        self.outcome = RunOutcome(exit_code=None)
        self.deleted = False
        self.said: set[str] = set()

    def run(self) -> RunOutcome:
        req, api = self.req, self.api
        image = req.image or self.config.get("default_image") or "python:3.11-slim"
        manifest = job_manifest(req, self.config, name=self.name, image=image, secret=self.secret)
        secret_made = False
        try:
            if self.secret:
                with self._doing(f"creating secret {api.namespace}/{self.secret}"):
                    api.create_secret(secret_manifest(req, name=self.secret, labels=_labels(req)))
                secret_made = True
            with self._doing(f"creating job {api.namespace}/{self.name}"):
                created = api.create_job(manifest)
            req.log.line(f"kubernetes job {api.namespace}/{self.name}, image {image}")
            if self.secret:
                with self._doing(f"handing secret {self.secret} to its job"):
                    api.own_secret(self.secret, created)
            self._supervise()
        finally:
            self._clean_up(secret_made)
        return self.outcome

    def _doing(self, doing: str) -> _Explained:
        return _Explained(self.api, doing)

    def _supervise(self) -> None:
        self.follower: Follower | None = None
        try:
            self._watch()
        finally:
            if self.follower is not None:
                self.follower.close()

    def _watch(self) -> None:
        req = self.req
        deadline = time.monotonic() + req.timeout
        reconnects = 0
        next_poll = 0.0
        failing_since: float | None = None
        while True:
            if self.follower is not None:
                data = self.follower.take()
                if data:
                    req.log.write(data)
            else:
                req.cancel.wait(0.05)
            if req.cancel.is_set():
                self.outcome.canceled = True
                self._stop()
                return
            if time.monotonic() > deadline:
                self.outcome.timed_out = True
                self._stop()
                return
            if time.monotonic() < next_poll:
                continue
            next_poll = time.monotonic() + POLL_INTERVAL
            try:
                job = self.api.read_job(self.name)
                pods = self.api.pods(self.name) if job is not None else []
                failing_since = None
            except API_ERRORS as exc:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > API_PATIENCE_SECONDS:
                    raise self.api.explain(exc, f"watching job {self.name}") from None
                continue
            if job is None:
                raise KubeRunnerError(f"The Kubernetes job {self.name} was deleted from outside.")
            pod = _newest(pods)
            state = _container_status(pod).get("state") or {}
            if self.follower is None:
                if "running" in state or "terminated" in state:
                    self.follower = Follower(self.api, pod["metadata"]["name"], None, deadline)
                elif self._hopeless(pod, state) or self._job_failed(job, pod):
                    return
                continue
            if not self.follower.finished:
                continue
            if state.get("terminated"):
                self._terminated(state["terminated"])
                return
            if self._job_failed(job, pod):
                return
            quiet = time.monotonic() - self.follower.ended_at
            if "running" in state and quiet > LOG_CUT_AFTER and reconnects < MAX_LOG_RECONNECTS:
                # The stream ended, yet the container still runs: the API server cut it.
                reconnects += 1
                req.log.line("the log stream was cut; following again (lines may repeat)")
                since = int(quiet) + 1
                self.follower.close()
                self.follower = Follower(self.api, pod["metadata"]["name"], since, deadline)

    def _hopeless(self, pod: dict | None, state: dict) -> bool:
        """Say why the pod waits; True when waiting cannot help (the outcome has the error)."""
        if pod is None:
            return False
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if condition.get("reason") == "Unschedulable":
                self._say(f"waiting for a node: {condition.get('message') or 'unschedulable'}")
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason in HOPELESS:
            detail = waiting.get("message") or reason
            self.outcome.error = f"The pod cannot start: {HOPELESS[reason]} ({detail})."
            return True
        if reason:
            self._say(f"pod {pod['metadata']['name']}: {reason}")
        return False

    def _job_failed(self, job: dict, pod: dict | None) -> bool:
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Failed" and condition.get("status") == "True":
                reason = condition.get("reason") or "Failed"
                if reason == "DeadlineExceeded":
                    self.outcome.timed_out = True
                    return True
                terminated = (_container_status(pod).get("state") or {}).get("terminated")
                if terminated:
                    self._terminated(terminated)
                else:
                    message = condition.get("message") or reason
                    self.outcome.error = f"The Kubernetes job failed: {message}"
                return True
        return False

    def _terminated(self, terminated: dict) -> None:
        self.outcome.exit_code = terminated.get("exitCode")
        if terminated.get("reason") == "OOMKilled":
            limit = kube_memory(self.req.resources) if self.req.resources.memory else "none set"
            self.req.log.line(f"the container ran out of memory (limit {limit})")

    def _say(self, text: str) -> None:
        if text not in self.said:
            self.said.add(text)
            self.req.log.line(text)

    def _stop(self) -> None:
        with self._doing(f"deleting job {self.api.namespace}/{self.name}"):
            self.api.delete_job(self.name, "Foreground")
        self.deleted = True
        self.req.log.line(f"deleted kubernetes job {self.name}")

    def _clean_up(self, secret_made: bool) -> None:
        try:
            if not self.deleted:
                # Also after a normal end: the pod's output, unmasked, lives as long as the pod.
                self.api.delete_job(self.name, "Background")
            if secret_made:
                self.api.delete_secret(self.secret)
        except API_ERRORS as exc:
            what = self.api.explain(exc, "cleaning up")
            self.req.log.line(f"{what} (the job's ttlSecondsAfterFinished removes it later)")


class _Explained:
    def __init__(self, api: Api, doing: str):
        self.api, self.doing = api, doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is not None and isinstance(exc, API_ERRORS):
            raise self.api.explain(exc, self.doing) from None
        return False


class Follower:
    """Reads the pod's log (``follow=true``) in a thread, in the chunks the server sends."""

    def __init__(self, api: Api, pod: str, since_seconds: int | None, deadline: float):
        self.chunks: queue.Queue[Any] = queue.Queue(maxsize=256)
        self.finished = False
        self.ended_at = 0.0
        self.response: Any = None
        read_timeout = deadline - time.monotonic() + KILL_GRACE_SECONDS + BACKSTOP_SECONDS
        self.thread = threading.Thread(
            target=self._pump, args=(api, pod, since_seconds, read_timeout), daemon=True
        )
        self.thread.start()

    def _pump(self, api: Api, pod: str, since: int | None, read_timeout: float) -> None:
        try:
            self.response = api.follow_log(pod, since_seconds=since, read_timeout=read_timeout)
            while data := self.response.read1(CHUNK):
                self.chunks.put(data)
        except Exception:  # noqa: S110 - a closed or broken stream ends this follower
            pass
        finally:
            self.chunks.put(_EOF)

    def take(self) -> bytes:
        """What has arrived (waiting up to 0.1 s for the first piece, at most about CHUNK)."""
        parts: list[bytes] = []
        size = 0
        while not self.finished and size < CHUNK:
            try:
                item = self.chunks.get_nowait() if parts else self.chunks.get(timeout=0.1)
            except queue.Empty:
                break
            if item is _EOF:
                self.finished, self.ended_at = True, time.monotonic()
                break
            parts.append(item)
            size += len(item)
        return b"".join(parts)

    def close(self) -> None:
        response = self.response
        if response is not None:
            try:  # unblocks the reading thread (shutdown: urllib3 2.3+)
                getattr(response, "shutdown", response.close)()
            except Exception:  # noqa: S110 - already closed
                pass


def job_name(req: RunRequest) -> str:
    """``cp-<project>-<run>-<job>-<attempt>-<random>``, a DNS-1123 label of at most 63."""
    parts = [req.env.get(var, "") for var in NAME_PARTS]
    base = re.sub(r"[^a-z0-9]+", "-", "-".join(p for p in parts if p).lower()).strip("-")
    suffix = uuid.uuid4().hex[:6]
    base = base[: 63 - len(suffix) - 4].strip("-")
    return f"cp-{base}-{suffix}" if base else f"cp-{suffix}"


def _labels(req: RunRequest) -> dict[str, str]:
    labels = {L_MANAGED_BY: MANAGED_BY, L_RUNNER: "kubernetes"}
    for key, attr in ID_LABELS.items():
        if getattr(req, attr) is not None:
            labels[key] = str(getattr(req, attr))
    labels.update({k: label_value(req.env[var]) for k, var in ENV_LABELS.items() if var in req.env})
    return {k: v for k, v in labels.items() if v}


def _secret_env(req: RunRequest) -> dict[str, str]:
    """The job environment's entries whose value is a secret."""
    secrets = {s for s in req.secrets if s}
    return {k: v for k, v in req.env.items() if v in secrets and k not in HOST_ONLY_ENV}


def _secret_keys(req: RunRequest) -> dict[str, str]:
    """Variable name → key in the Secret (a name a Secret cannot hold gets a made-up key)."""
    names = sorted(_secret_env(req))
    return {n: n if SECRET_KEY.fullmatch(n) else f"var-{i}" for i, n in enumerate(names)}


def secret_manifest(req: RunRequest, *, name: str, labels: dict[str, str]) -> dict:
    values = _secret_env(req)
    data = {
        key: base64.b64encode(values[var].encode()).decode()
        for var, key in _secret_keys(req).items()
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels},
        "type": "Opaque",
        "data": data,
    }


def resource_requirements(req: RunRequest) -> dict[str, dict[str, str]]:
    """CPU and memory requested (memory also the limit: a job past it is killed, not the node);
    GPUs as ``nvidia.com/gpu`` limits (Kubernetes takes the request from the limit)."""
    wanted = req.resources
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if wanted.cpu is not None:
        requests["cpu"] = kube_cpu(wanted.cpu)
    if wanted.memory is not None:
        requests["memory"] = limits["memory"] = kube_memory(wanted)
    if wanted.gpu:
        limits[GPU_RESOURCE] = str(wanted.gpu)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def job_manifest(
    req: RunRequest, config: dict[str, Any], *, name: str, image: str, secret: str
) -> dict:
    script = "\n".join(
        f"printf '\\033[1;32m$ %s\\033[0m\\n' {_sh_quote(line)}\n{line}" for line in req.script
    )
    secret_keys = _secret_keys(req) if secret else {}
    env = []
    for var, value in req.env.items():
        if var in HOST_ONLY_ENV:  # the worker host's; the image's own apply
            continue
        if var in secret_keys:
            ref = {"name": secret, "key": secret_keys[var]}
            env.append({"name": var, "valueFrom": {"secretKeyRef": ref}})
        else:
            env.append({"name": var, "value": value})
    labels = _labels(req)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "command": ["bash", "-eo", "pipefail", "-c", script],
        "env": env,
        "resources": resource_requirements(req),
    }
    if config.get("image_pull_policy"):
        container["imagePullPolicy"] = config["image_pull_policy"]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,  # no variables describing the namespace's Services
        "automountServiceAccountToken": bool(config.get("service_account")),
        "containers": [container],
    }
    if config.get("service_account"):
        pod["serviceAccountName"] = config["service_account"]
    if config.get("image_pull_secret"):
        pod["imagePullSecrets"] = [{"name": config["image_pull_secret"]}]
    if config.get("workspace_claim"):
        container["workingDir"] = WORKDIR
        sub_path = _workspace_sub_path(req.workspace)
        container["volumeMounts"] = [
            {"name": "workspace", "mountPath": WORKDIR, "subPath": sub_path}
        ]
        pod["volumes"] = [
            {"name": "workspace", "persistentVolumeClaim": {"claimName": config["workspace_claim"]}}
        ]
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": int(req.timeout + KILL_GRACE_SECONDS + BACKSTOP_SECONDS),
        "template": {"metadata": {"labels": {**labels, L_KUBE_JOB: name}}, "spec": pod},
    }
    if config.get("ttl_seconds"):
        spec["ttlSecondsAfterFinished"] = int(config["ttl_seconds"])
    annotations = {}
    if req.env.get("CONTROLPLANE_COMMIT_SHA"):
        annotations["controlplane.commit"] = req.env["CONTROLPLANE_COMMIT_SHA"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": spec,
    }


def _workspace_sub_path(workspace: Path) -> str:
    root = Path(settings.WORKSPACE_DIR).resolve()
    try:
        return str(workspace.resolve().relative_to(root))
    except ValueError:
        raise KubeRunnerError(
            f"The workspace {workspace} is not under WORKSPACE_DIR {root}, so it is not on the "
            "workspace claim."
        ) from None


def _newest(pods: list[dict]) -> dict | None:
    if not pods:
        return None
    return max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")


def _container_status(pod: dict | None) -> dict:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return status
    return {}
