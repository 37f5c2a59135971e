"""The Docker runner against a real engine (``scripts/docker_up.sh`` brings one up as root).

Without an engine these tests skip, unless ``CI`` is true and ``CONTROLPLANE_REQUIRE_DOCKER=1``:
then they fail, so a CI job that promised Docker cannot pass silently without it.
"""

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docker.client import DockerClient

from apps.pipelines.logs import MASK, LogWriter
from apps.pipelines.runners import RunOutcome, RunRequest, get_runner
from apps.pipelines.runners.docker import DockerRunner

from ..dockerengine import IMAGE, docker_client
from .worker import WorkerProcess, wait_for

pytestmark = pytest.mark.docker

# Every container these tests start carries this value as its controlplane.project label.
SESSION = f"pytest-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module", autouse=True)
def engine() -> Iterator[DockerClient]:
    client = docker_client()
    yield client
    # Whatever happened, no container of this session may be left behind.
    leftovers = ours(client)
    for c in leftovers:
        c.remove(force=True)
    client.close()
    assert not leftovers, [c.name for c in leftovers]


def ours(client: DockerClient, job: str | None = None, **filters: str) -> list:
    labels = [f"controlplane.project={SESSION}"] + ([f"controlplane.job={job}"] if job else [])
    return client.containers.list(all=True, filters={"label": labels, **filters})


@pytest.fixture
def make_request(tmp_path: Path) -> Callable[..., RunRequest]:
    def make(
        script: list[str],
        *,
        env: dict[str, str] | None = None,
        secrets: tuple[str, ...] = (),
        timeout: float = 120,
        image: str = IMAGE,
    ) -> RunRequest:
        job = f"job-{uuid.uuid4().hex[:8]}"
        base_env = {
            "PATH": "/host/only/bin:/usr/bin:/bin",
            "HOME": "/root",
            "CI": "true",
            "CONTROLPLANE_PROJECT": SESSION,
            "CONTROLPLANE_RUN_NUMBER": "7",
            "CONTROLPLANE_JOB_NAME": job,
            "CONTROLPLANE_JOB_KIND": "test",
            "CONTROLPLANE_JOB_ATTEMPT": "1",
        }
        return RunRequest(
            script=script,
            workspace=tmp_path / "workspace",
            env={**base_env, **(env or {})},
            timeout=timeout,
            log=LogWriter(tmp_path / "logs" / f"{job}.log", secrets=secrets),
            image=image,
        )

    return make


def run(req: RunRequest) -> tuple[RunOutcome, str]:
    outcome = DockerRunner().run(req)
    req.log.close()
    return outcome, req.log.path.read_text()


def in_background(req: RunRequest) -> tuple[threading.Thread, dict]:
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(outcome=DockerRunner().run(req)))
    thread.start()
    return thread, result


def running_container(client: DockerClient, req: RunRequest):
    job = req.env["CONTROLPLANE_JOB_NAME"]
    found = wait_for(lambda: ours(client, job, status="running"), 30)
    assert found, "the container never ran"
    return found[0]


def test_get_runner_knows_docker():
    assert isinstance(get_runner("docker"), DockerRunner)


def test_runs_the_script_in_the_image(make_request, engine):
    req = make_request(["python3 --version", "echo answer=$((6 * 7))", "cat /etc/debian_version"])
    outcome, log = run(req)
    assert outcome == RunOutcome(exit_code=0)
    assert outcome.succeeded
    assert "Python 3.11" in log
    assert "answer=42" in log
    assert "$ echo answer=$((6 * 7))" in log  # each command is echoed before it runs
    assert not ours(engine, req.env["CONTROLPLANE_JOB_NAME"])


def test_logs_arrive_while_the_container_runs(make_request, engine):
    req = make_request(["echo first-$((40 + 2))", "sleep 3", "echo second-$((40 + 3))"])
    thread, result = in_background(req)
    try:
        assert wait_for(lambda: "first-42" in req.log.path.read_text(), 30)
        assert "second-43" not in req.log.path.read_text()
        assert thread.is_alive()
        assert ours(engine, req.env["CONTROLPLANE_JOB_NAME"], status="running")
    finally:
        thread.join(60)
    req.log.close()
    assert result["outcome"].exit_code == 0
    assert "second-43" in req.log.path.read_text()


def test_all_output_arrives_in_order(make_request):
    interleave = (
        'python3 -c \'import sys; [(print(f"out-{i}", flush=True), '
        'print(f"err-{i}", file=sys.stderr, flush=True)) for i in range(20000)]\''
    )
    outcome, log = run(make_request(["seq 1 200000", interleave]))
    assert outcome.exit_code == 0
    lines = log.splitlines()
    start = lines.index("1")
    assert lines[start : start + 200000] == [str(i) for i in range(1, 200001)]
    mixed = [line for line in lines if line.startswith(("out-", "err-"))]
    assert mixed == [f"{kind}-{i}" for i in range(20000) for kind in ("out", "err")]


def test_workspace_is_mounted_and_stays_removable(make_request, tmp_path):
    req = make_request(
        [
            "pwd",
            "cat input.txt",
            "echo made-inside > output.txt",
            "mkdir -p deep/er && touch deep/er/file && chmod 000 deep",
        ]
    )
    req.workspace.mkdir(parents=True)
    (req.workspace / "input.txt").write_text("from-the-host\n")
    outcome, log = run(req)
    assert outcome.exit_code == 0, log
    assert "/workspace\n" in log
    assert "from-the-host" in log
    assert (req.workspace / "output.txt").read_text() == "made-inside\n"
    shutil.rmtree(req.workspace)  # what the executor does afterwards
    assert not req.workspace.exists()


def test_environment_is_passed_but_host_path_and_home_are_not(make_request):
    req = make_request(
        ['echo "greeting=$GREETING"', 'echo "path=$PATH"', 'echo "home=$HOME"'],
        env={"GREETING": "hello there"},
    )
    outcome, log = run(req)
    assert outcome.exit_code == 0, log
    assert "greeting=hello there" in log
    assert "path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in log
    assert "/host/only/bin" not in log
    assert "home=/root" in log


def test_secrets_are_masked(make_request):
    secret = "s3cr3t-" + uuid.uuid4().hex
    req = make_request(['echo "token=$TOKEN"'], env={"TOKEN": secret}, secrets=(secret,))
    outcome, log = run(req)
    assert outcome.exit_code == 0
    assert f"token={MASK}" in log
    assert secret not in log


def test_a_failing_command_stops_the_script_with_its_exit_code(make_request):
    outcome, log = run(make_request(["echo before", "exit 3", "echo never-$((1 + 1))"]))
    assert outcome.exit_code == 3
    assert not outcome.succeeded
    assert "before" in log
    assert "never-2" not in log


def test_pipefail_applies(make_request):
    outcome, _ = run(make_request(["false | cat", "echo unreachable"]))
    assert outcome.exit_code == 1


def test_timeout_kills_and_removes_the_container(make_request, engine):
    req = make_request(["echo started", "sleep 120"], timeout=2)
    started = time.monotonic()
    outcome, log = run(req)
    assert outcome.timed_out
    assert not outcome.succeeded
    assert time.monotonic() - started < 20
    assert "started" in log
    assert not ours(engine, req.env["CONTROLPLANE_JOB_NAME"])


def test_the_container_enforces_its_own_deadline_if_the_worker_is_gone(engine):
    from apps.pipelines.runners.docker import LAUNCHER

    container = engine.containers.run(
        IMAGE,
        ["echo started; sleep 120", "2"],
        entrypoint=["/bin/sh", "-c", LAUNCHER, "controlplane-job"],
        detach=True,
        init=True,
        network_mode="none",
        labels={"controlplane.project": SESSION},
    )
    try:
        started = time.monotonic()
        status = container.wait(timeout=30)
        assert time.monotonic() - started < 15
        assert status["StatusCode"] == 137
    finally:
        container.remove(force=True)


def test_cancel_kills_the_container(make_request, engine):
    req = make_request(["sleep 120"])
    thread, result = in_background(req)
    running_container(engine, req)
    started = time.monotonic()
    req.cancel.set()
    thread.join(30)
    assert not thread.is_alive()
    assert time.monotonic() - started < 15
    assert result["outcome"].canceled
    assert not ours(engine, req.env["CONTROLPLANE_JOB_NAME"])


def test_limits_labels_and_host_network_are_applied(make_request, engine, settings):
    settings.CONTROLPLANE_DOCKER_MEMORY = "256m"
    settings.CONTROLPLANE_DOCKER_CPUS = 1.5
    req = make_request(["sleep 60"])
    thread, result = in_background(req)
    try:
        container = running_container(engine, req)
        host = container.attrs["HostConfig"]
        labels = container.labels
    finally:
        req.cancel.set()
        thread.join(30)
    assert host["Memory"] == 256 * 1024 * 1024
    assert host["NanoCpus"] == 1_500_000_000
    assert host["PidsLimit"] == 4096
    assert host["NetworkMode"] == "host"
    assert host["Init"] is True
    assert host["AutoRemove"] is False
    assert labels["controlplane.runner"] == "docker"
    assert labels["controlplane.job"] == req.env["CONTROLPLANE_JOB_NAME"]
    assert labels["controlplane.run"] == "7"
    assert labels["controlplane.kind"] == "test"
    assert container.name.startswith(f"cp-{SESSION}-7-{req.env['CONTROLPLANE_JOB_NAME']}-1-")
    assert result["outcome"].canceled


def test_memory_limit_is_enforced(make_request, settings):
    settings.CONTROLPLANE_DOCKER_MEMORY = "64m"
    outcome, log = run(make_request(["python3 -c 'b = b\"x\" * (512 * 1024 * 1024)'"]))
    assert outcome.exit_code == 137, log
    assert "ran out of memory (limit 64m)" in log


@pytest.mark.parametrize(("network", "reachable"), [("host", True), ("none", False)])
def test_network_mode(make_request, settings, network, reachable):
    settings.CONTROLPLANE_DOCKER_NETWORK = network
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 5)'"
        outcome, log = run(make_request([probe]))
    assert (outcome.exit_code == 0) is reachable, log


def test_other_networks_are_refused(make_request, engine, settings):
    settings.CONTROLPLANE_DOCKER_NETWORK = "bridge"
    req = make_request(["echo never"])
    outcome, log = run(req)
    assert outcome.exit_code is None
    assert "CONTROLPLANE_DOCKER_NETWORK must be one of host, none" in outcome.error
    assert not ours(engine, req.env["CONTROLPLANE_JOB_NAME"])


def test_missing_image_is_a_clear_error(make_request, settings):
    settings.CONTROLPLANE_DOCKER_PULL = False
    outcome, log = run(make_request(["echo never"], image="local/does-not-exist:1"))
    assert outcome.exit_code is None
    assert outcome.error.startswith(
        "image local/does-not-exist:1 is not present on the Docker host and pulling is off"
    )


def test_pull_failures_are_a_clear_error(make_request, settings):
    settings.CONTROLPLANE_DOCKER_PULL = True
    # A registry on a closed local port: the pull path runs, and nothing leaves this machine.
    outcome, log = run(make_request(["echo never"], image="127.0.0.1:1/nothing:1"))
    assert outcome.exit_code is None
    assert outcome.error.startswith("could not pull image 127.0.0.1:1/nothing:1: ")
    assert "pulling image 127.0.0.1:1/nothing:1" in log


def test_default_image_comes_from_settings(make_request, settings):
    settings.CONTROLPLANE_DOCKER_DEFAULT_IMAGE = IMAGE
    outcome, log = run(make_request(["cat /etc/debian_version"], image=""))
    assert outcome.exit_code == 0, log


def test_unreachable_engine_is_a_clear_error(make_request, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    outcome, log = run(make_request(["echo never"]))
    assert outcome.exit_code is None
    assert outcome.error.startswith("Docker engine unreachable: ")
    assert "Docker engine unreachable" not in log  # the executor writes the error once


def test_images_without_bash_run_the_script_with_sh(make_request, engine):
    tag = uuid.uuid4().hex[:8]
    builder = engine.containers.run(
        IMAGE, ["rm", "-f", "/usr/bin/bash"], detach=True, network_mode="none"
    )
    try:
        builder.wait(timeout=60)
        builder.commit(repository="controlplane-test/nobash", tag=tag)
    finally:
        builder.remove(force=True)
    try:
        outcome, log = run(
            make_request(
                ['test -z "$BASH_VERSION" && echo shell-$((1 + 1))', "false", "echo never"],
                image=f"controlplane-test/nobash:{tag}",
            )
        )
    finally:
        engine.images.remove(f"controlplane-test/nobash:{tag}", force=True)
    assert outcome.exit_code == 1, log
    assert "shell-2" in log
    assert "never" not in log


def test_a_non_root_worker_runs_the_container_as_itself(make_request, monkeypatch):
    import apps.pipelines.runners.docker as docker_runner

    monkeypatch.setattr(docker_runner.os, "getuid", lambda: 12345)
    monkeypatch.setattr(docker_runner.os, "getgid", lambda: 12345)
    req = make_request(
        ['echo "uid=$(id -u) gid=$(id -g) home=$HOME path=$PATH"', "echo mine > made.txt"]
    )
    req.workspace.mkdir(parents=True)
    os.chown(req.workspace, 12345, 12345)  # what a worker running as that uid would have
    outcome, log = run(req)
    assert outcome.exit_code == 0, log
    assert "uid=12345 gid=12345 home=/tmp path=/tmp/.local/bin:/usr/local/sbin:" in log
    assert (req.workspace / "made.txt").stat().st_uid == 12345


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_docker_job(project, admin_user):
    from apps.pipelines import services
    from apps.pipelines.choices import JobStatus
    from apps.pipelines.logs import log_path
    from apps.pipelines.models import PipelineRun
    from apps.projects.services import variable_set

    variable_set(
        project=project, key="TOKEN", value="tok-d0ck3r-42", is_secret=True, actor=admin_user
    )
    worker = WorkerProcess().start()
    try:
        run_ = services.run_create(
            project=project,
            actor=admin_user,
            jobs=[
                {
                    "name": "in-docker",
                    "kind": "test",
                    "runner": "docker",
                    "image": IMAGE,
                    "script": [
                        "cat /etc/debian_version",
                        "echo token=$TOKEN",
                        "id -u",
                        "echo first line",
                        "sleep 3",
                        "echo second line",
                    ],
                },
                {
                    "name": "no-image",
                    "kind": "test",
                    "runner": "docker",
                    "image": "local/does-not-exist:1",
                    "retries": 0,
                    "script": ["echo never"],
                },
            ],
        )
        job = run_.jobs.get(name="in-docker")
        path = log_path(job.pk, job.run_id)
        # Live: the first line is in the stored log while the container still sleeps.
        wait_for(lambda: path.exists() and "first line" in path.read_text(), 60)
        assert "second line" not in path.read_text()
        assert type(job).objects.get(pk=job.pk).status == JobStatus.RUNNING
        run_ = wait_for(lambda: (r := PipelineRun.objects.get(pk=run_.pk)).is_terminal and r, 90)
    finally:
        worker.stop()
    jobs = {j.name: j for j in run_.jobs.all()}
    ok, missing = jobs["in-docker"], jobs["no-image"]
    log = log_path(ok.pk, ok.run_id).read_text()
    assert ok.status == JobStatus.SUCCEEDED, (ok.error_message, log)
    assert "token=********" in log
    assert "second line" in log
    assert "tok-d0ck3r-42" not in log
    assert missing.status == JobStatus.FAILED
    assert missing.exit_code is None
    assert missing.error_message.startswith(
        "image local/does-not-exist:1 is not present on the Docker host and pulling is off"
    )
    assert log_path(missing.pk, missing.run_id).read_text().count("is not present") == 1
