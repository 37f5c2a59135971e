"""The kubernetes runner against a tiny Kubernetes API server run by the test (``kubeapi.py``).

No mock of the client: the real ``kubernetes`` package talks HTTP to the fake on 127.0.0.1,
which plays the Job controller and the kubelet (a pod per Job whose output arrives over time,
followed with ``follow=true``). The tests look at what arrived there and at the job log.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from apps.pipelines.logs import MASK, LogWriter
from apps.pipelines.resources import job_resources
from apps.pipelines.runners import RunOutcome, RunRequest, get_runner
from apps.pipelines.runners import kubernetes as kube
from apps.pipelines.runners.kubernetes import KubernetesRunner

from .kubeapi import TOKEN, FakeKubernetes, Program, start
from .worker import wait_for

NAMESPACE = "ci"
SECRET_VALUE = "hunter2-s3cret-value"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake(settings, monkeypatch):
    fake = FakeKubernetes()
    server = start(fake)
    monkeypatch.setattr(kube, "POLL_INTERVAL", 0.05)
    settings.CONTROLPLANE_KUBE_RUNNER = {
        "api_url": fake.url,
        "namespace": NAMESPACE,
        "service_account": "trainer",
        "default_image": "python:3.11-slim",
        "ttl_seconds": 300,
        "image_pull_secret": "regcred",
    }
    settings.CONTROLPLANE_KUBE_RUNNER_TOKEN = TOKEN
    yield fake
    server.shutdown()
    server.server_close()


def make_request(tmp_path: Path, script=("echo hi",), **fields) -> RunRequest:
    job = f"train-{uuid.uuid4().hex[:6]}"
    env = {
        "PATH": "/host/only/bin",
        "HOME": "/home/worker",
        "CI": "true",
        "CONTROLPLANE_PROJECT": "churn-model",
        "CONTROLPLANE_RUN_NUMBER": "12",
        "CONTROLPLANE_JOB_NAME": job,
        "CONTROLPLANE_JOB_KIND": "train",
        "CONTROLPLANE_JOB_ATTEMPT": "1",
        "CONTROLPLANE_COMMIT_SHA": "1a2b3c4d5e6f",
        "MODEL_NAME": "churn",
        "API_KEY": SECRET_VALUE,
        **fields.pop("env", {}),
    }
    secrets = fields.pop("secrets", (SECRET_VALUE,))
    return RunRequest(
        script=list(script),
        workspace=tmp_path / "workspace",
        env=env,
        timeout=fields.pop("timeout", 30),
        log=LogWriter(tmp_path / f"{job}.log", secrets=secrets),
        image=fields.pop("image", "registry.local/trainer:3"),
        resources=job_resources({"resources": fields.pop("resources", {})}),
        secrets=secrets,
        project_id=3,
        run_id=45,
        job_id=678,
        **fields,
    )


def run(req: RunRequest) -> tuple[RunOutcome, str]:
    outcome = KubernetesRunner().run(req)
    req.log.close()
    return outcome, req.log.path.read_text()


def in_background(req: RunRequest) -> tuple[threading.Thread, dict]:
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(outcome=KubernetesRunner().run(req)))
    thread.start()
    return thread, result


def test_get_runner_knows_kubernetes():
    assert isinstance(get_runner("kubernetes"), KubernetesRunner)


def test_the_job_manifest_carries_image_script_env_resources_and_labels(fake, tmp_path):
    fake.programs["registry.local/trainer:3"] = Program(steps=[b"training\n", b"done\n"])
    req = make_request(
        tmp_path,
        script=["python train.py --epochs 3", "echo ok"],
        resources={"cpu": 2, "memory": "4Gi", "gpu": 1},
    )
    outcome, log = run(req)
    assert outcome == RunOutcome(exit_code=0)
    assert "training\ndone\n" in log

    (create,) = fake.calls("POST", "jobs")
    assert create["path"] == f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
    assert create["headers"]["authorization"] == f"Bearer {TOKEN}"
    job = create["body"]
    name = job["metadata"]["name"]
    assert name.startswith(f"cp-churn-model-12-{req.env['CONTROLPLANE_JOB_NAME']}-1-")
    assert len(name) <= 63
    labels = job["metadata"]["labels"]
    assert labels["controlplane.project-id"] == "3"
    assert labels["controlplane.run-id"] == "45"
    assert labels["controlplane.job-id"] == "678"
    assert labels["controlplane.project"] == "churn-model"
    assert labels["controlplane.run"] == "12"
    assert labels["controlplane.job"] == req.env["CONTROLPLANE_JOB_NAME"]
    assert labels["app.kubernetes.io/managed-by"] == "controlplane"
    assert job["metadata"]["annotations"]["controlplane.commit"] == "1a2b3c4d5e6f"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] == 300
    assert spec["activeDeadlineSeconds"] == 30 + 5 + 60
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "trainer"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["template"]["metadata"]["labels"]["controlplane.kube-job"] == name
    (container,) = pod["containers"]
    assert container["image"] == "registry.local/trainer:3"
    assert container["command"][:4] == ["bash", "-eo", "pipefail", "-c"]
    assert "python train.py --epochs 3\n" in container["command"][4]
    assert container["resources"] == {
        "requests": {"cpu": "2000m", "memory": "4Gi"},
        "limits": {"memory": "4Gi", "nvidia.com/gpu": "1"},
    }
    assert "volumeMounts" not in container  # no workspace unless a claim is configured
    env = {e["name"]: e for e in container["env"]}
    assert env["MODEL_NAME"] == {"name": "MODEL_NAME", "value": "churn"}
    assert env["CONTROLPLANE_JOB_KIND"]["value"] == "train"
    assert "PATH" not in env and "HOME" not in env  # the worker host's, not the image's
    secret_name = f"{name}-env"
    assert env["API_KEY"] == {
        "name": "API_KEY",
        "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "API_KEY"}},
    }
    assert SECRET_VALUE not in json.dumps(job)  # the manifest holds no secret value

    (secret,) = fake.calls("POST", "secrets")
    assert secret["path"] == f"/api/v1/namespaces/{NAMESPACE}/secrets"
    assert base64.b64decode(secret["body"]["data"]["API_KEY"]).decode() == SECRET_VALUE
    assert list(secret["body"]["data"]) == ["API_KEY"]
    (owned,) = fake.calls("PATCH", "secrets")
    owner = owned["body"]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Job", name)
    # After the end: the Job (its pod's output) and the Secret are gone.
    (deleted,) = fake.calls("DELETE", "jobs")
    assert deleted["query"]["propagationPolicy"] == ["Background"]
    assert fake.calls("DELETE", "secrets")
    assert not fake.jobs and not fake.secrets


def test_logs_are_streamed_into_the_job_log_while_the_pod_runs(fake, tmp_path):
    go_on = threading.Event()
    fake.programs["registry.local/trainer:3"] = Program(
        steps=[b"epoch 1 loss=0.9\n", go_on, b"epoch 2 loss=0.4\n"]
    )
    # No secrets: the log writer holds back a secret's length of output to mask one that
    # spans two chunks.
    req = make_request(tmp_path, secrets=())
    thread, result = in_background(req)
    try:
        assert wait_for(lambda: "epoch 1 loss=0.9" in req.log.path.read_text(), 10)
        assert "epoch 2" not in req.log.path.read_text()
        (log_call,) = fake.calls("GET", "log")
        assert log_call["query"]["follow"] == ["true"]
        assert log_call["query"]["container"] == ["job"]
    finally:
        go_on.set()
        thread.join(timeout=15)
    req.log.close()
    text = req.log.path.read_text()
    assert text.index("epoch 1") < text.index("epoch 2")
    assert result["outcome"] == RunOutcome(exit_code=0)


def test_the_exit_code_is_the_pods(fake, tmp_path):
    fake.programs["registry.local/trainer:3"] = Program(steps=[b"bad data\n"], exit_code=3)
    outcome, log = run(make_request(tmp_path))
    assert outcome.exit_code == 3
    assert not outcome.succeeded
    assert "bad data" in log


def test_secret_values_printed_by_the_pod_are_masked(fake, tmp_path):
    fake.programs["registry.local/trainer:3"] = Program(steps=[f"key={SECRET_VALUE}\n".encode()])
    outcome, log = run(make_request(tmp_path))
    assert outcome.exit_code == 0
    assert f"key={MASK}" in log
    assert SECRET_VALUE not in log


def test_without_secrets_no_secret_is_made(fake, tmp_path):
    outcome, _ = run(make_request(tmp_path, secrets=()))
    assert outcome.exit_code == 0
    assert not fake.calls("POST", "secrets")
    env = fake.calls("POST", "jobs")[0]["body"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "API_KEY", "value": SECRET_VALUE} in env["env"]


def test_cancel_deletes_the_job_in_the_foreground(fake, tmp_path):
    never = threading.Event()
    fake.programs["registry.local/trainer:3"] = Program(steps=[b"started\n", never])
    req = make_request(tmp_path, secrets=())
    thread, result = in_background(req)
    assert wait_for(lambda: "started" in req.log.path.read_text(), 10)
    req.cancel.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert result["outcome"].canceled
    (deleted,) = fake.calls("DELETE", "jobs")
    assert deleted["query"]["propagationPolicy"] == ["Foreground"]
    assert not fake.jobs and not fake.pods and not fake.secrets


def test_timeout_deletes_the_job(fake, tmp_path):
    never = threading.Event()
    fake.programs["registry.local/trainer:3"] = Program(steps=[b"started\n", never])
    started = time.monotonic()
    outcome, _ = run(make_request(tmp_path, timeout=1))
    assert outcome.timed_out
    assert time.monotonic() - started < 8
    (deleted,) = fake.calls("DELETE", "jobs")
    assert deleted["query"]["propagationPolicy"] == ["Foreground"]


def test_an_image_that_cannot_be_pulled_is_a_clear_error(fake, tmp_path):
    fake.programs["registry.local/missing:1"] = Program(waiting="ImagePullBackOff")
    outcome, _ = run(make_request(tmp_path, image="registry.local/missing:1"))
    assert outcome.exit_code is None
    assert "cannot pull the image" in outcome.error
    assert not fake.jobs  # deleted all the same


def test_waiting_for_a_node_is_said_in_the_log(fake, tmp_path):
    fake.programs["registry.local/trainer:3"] = Program(steps=[b"on a gpu\n"], unschedulable=3)
    outcome, log = run(make_request(tmp_path, resources={"gpu": 2}))
    assert outcome.exit_code == 0
    assert log.count("waiting for a node: 0/3 nodes are available") == 1
    assert "on a gpu" in log


def test_the_default_image_comes_from_settings(fake, tmp_path):
    outcome, _ = run(make_request(tmp_path, image=""))
    assert outcome.exit_code == 0
    body = fake.calls("POST", "jobs")[0]["body"]
    assert body["spec"]["template"]["spec"]["containers"][0]["image"] == "python:3.11-slim"


def test_a_workspace_claim_mounts_the_checkout(fake, tmp_path, settings):
    settings.WORKSPACE_DIR = tmp_path
    settings.CONTROLPLANE_KUBE_RUNNER = {
        **settings.CONTROLPLANE_KUBE_RUNNER,
        "workspace_claim": "ws",
    }
    outcome, _ = run(make_request(tmp_path))
    assert outcome.exit_code == 0
    pod = fake.calls("POST", "jobs")[0]["body"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "workspace", "persistentVolumeClaim": {"claimName": "ws"}}]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "workspace", "mountPath": "/workspace", "subPath": "workspace"}
    ]
    assert pod["containers"][0]["workingDir"] == "/workspace"


def test_a_forbidden_create_is_explained_without_the_token(fake, tmp_path):
    fake.forbid.add("POST jobs")
    outcome, _ = run(make_request(tmp_path))
    assert outcome.exit_code is None
    assert "forbids it (403) while creating job ci/cp-churn-model" in outcome.error
    assert "pods/log" in outcome.error
    assert TOKEN not in outcome.error
    assert not fake.secrets  # the secret made before the refusal is removed


def test_a_wrong_token_is_explained(fake, tmp_path, settings):
    settings.CONTROLPLANE_KUBE_RUNNER_TOKEN = "wrong-token"  # noqa: S105
    outcome, _ = run(make_request(tmp_path))
    assert "refused the credentials (401)" in outcome.error
    assert "wrong-token" not in outcome.error


def test_an_unreachable_cluster_is_a_clear_error(settings, tmp_path):
    settings.CONTROLPLANE_KUBE_RUNNER = {"api_url": "http://127.0.0.1:9", "namespace": "ci"}
    settings.CONTROLPLANE_KUBE_RUNNER_TOKEN = TOKEN
    outcome, _ = run(make_request(tmp_path))
    assert outcome.exit_code is None
    assert outcome.error.startswith("Cannot reach the Kubernetes API at http://127.0.0.1:9")


@pytest.mark.django_db(transaction=True)
def test_the_executor_runs_a_kubernetes_job_and_records_its_outcome(
    fake, settings, project, admin_user
):
    """Through services and the executor: exit code 0 → succeeded, else failed, with the pod's
    output in the job log and the project's secret masked there."""
    from apps.pipelines import services
    from apps.pipelines.choices import JobStatus
    from apps.pipelines.executor import execute_job
    from apps.pipelines.logs import log_path
    from apps.projects.services import variable_set

    variable_set(
        project=project, key="HF_TOKEN", value=SECRET_VALUE, is_secret=True, actor=admin_user
    )
    fake.programs["registry.local/trainer:ok"] = Program(
        steps=[f"loaded {SECRET_VALUE}\n".encode(), b"f1=0.91\n"]
    )
    fake.programs["registry.local/trainer:bad"] = Program(steps=[b"diverged\n"], exit_code=2)
    settings.RUNNERS_ALLOWED = ["local", "kubernetes"]
    run_ = services.run_create(
        project=project,
        actor=admin_user,
        jobs=[
            {
                "name": name,
                # Not a train job: those must leave a model file, which stays in the pod.
                "kind": "script",
                "runner": "kubernetes",
                "image": f"registry.local/trainer:{tag}",
                "script": ["python train.py"],
                "retries": 0,
                "options": {"resources": {"cpu": 1, "gpu": 1}},
            }
            for name, tag in (("good", "ok"), ("bad", "bad"))
        ],
    )
    finished = {}
    for name in ("good", "bad"):
        job = run_.jobs.get(name=name)
        claimed = services.job_claim(job_id=job.pk, worker="test-worker")
        assert claimed is not None
        finished[name] = execute_job(claimed)
    assert finished["good"].status == JobStatus.SUCCEEDED
    assert finished["good"].exit_code == 0
    assert finished["bad"].status == JobStatus.FAILED
    assert finished["bad"].exit_code == 2
    assert finished["bad"].error_message == "Exited with code 2."
    good_log = log_path(finished["good"].pk, run_.pk).read_text()
    assert f"loaded {MASK}" in good_log and SECRET_VALUE not in good_log
    assert "f1=0.91" in good_log
    assert "resources cpu=1 gpu=1" in good_log  # the routing note
    assert "diverged" in log_path(finished["bad"].pk, run_.pk).read_text()
    bodies = [c["body"] for c in fake.calls("POST", "jobs")]
    assert [b["metadata"]["labels"]["controlplane.job-id"] for b in bodies] == [
        str(finished["good"].pk),
        str(finished["bad"].pk),
    ]
    assert all(SECRET_VALUE not in json.dumps(b) for b in bodies)
