"""The Docker runner: the job's script in a fresh container per job, the workspace mounted at
``/workspace``, with memory / CPU / pids limits. Talks to the engine named by ``DOCKER_HOST``
(default: the local socket) through the docker SDK. See docs/runners.md.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
import uuid
from typing import Any

import requests
from django.conf import settings
from docker.client import DockerClient, from_env
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import LogConfig
from docker.utils import parse_repository_tag

from ..orphans import container_entry
from . import RunOutcome, RunRequest
from .local import KILL_GRACE_SECONDS, _sh_quote

WORKDIR = "/workspace"
PIDS_LIMIT = 4096
ALLOWED_NETWORKS = ("host", "none")
# The label every container of this runner carries; `docker ps -f label=controlplane.runner`.
RUNNER_LABEL = "controlplane.runner"
# Labels taken from the job's CONTROLPLANE_* environment (see executor.job_environment).
ENV_LABELS = {
    "controlplane.project": "CONTROLPLANE_PROJECT",
    "controlplane.run": "CONTROLPLANE_RUN_NUMBER",
    "controlplane.job": "CONTROLPLANE_JOB_NAME",
    "controlplane.kind": "CONTROLPLANE_JOB_KIND",
    "controlplane.attempt": "CONTROLPLANE_JOB_ATTEMPT",
    "controlplane.commit": "CONTROLPLANE_COMMIT_SHA",
}
NAME_PARTS = (
    "CONTROLPLANE_PROJECT",
    "CONTROLPLANE_RUN_NUMBER",
    "CONTROLPLANE_JOB_NAME",
    "CONTROLPLANE_JOB_ATTEMPT",
)
# These describe the worker host (the executor passes them through); inside a container the
# image's own values are the right ones.
HOST_ONLY_ENV = ("PATH", "HOME")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NON_ROOT_HOME = "/tmp"  # noqa: S108 - inside the container, which is thrown away
# $1 is the script, $2 a hard deadline in seconds. stderr joins stdout in one pipe, as in the
# local runner: Docker copies two pipes independently, and a later stderr line could overtake
# earlier stdout. Images without bash still run the script, with sh and without pipefail. The
# deadline holds even when the worker that watches the container dies (kill -9, lost host): the
# container cannot outlive its job's timeout by much.
LAUNCHER = (
    'exec 2>&1; d=""; if command -v timeout >/dev/null 2>&1; then d="timeout -s KILL $2"; fi; '
    'if command -v bash >/dev/null 2>&1; then exec $d bash -eo pipefail -c "$1"; fi; '
    'exec $d sh -ec "$1"'
)
# The in-container deadline comes this long after the runner's own timeout and grace period.
BACKSTOP_SECONDS = 60
CHUNK = 256 * 1024
# After the container exited, how long its log stream may stay silent before it is cut.
LOG_IDLE_SECONDS = 5
_EOF = object()


class DockerRunnerError(Exception):
    """A problem of the Docker host or the runner's configuration, not of the job's script."""


class DockerRunner:
    name = "docker"

    def run(self, req: RunRequest) -> RunOutcome:
        try:
            config = _config()
        except DockerRunnerError as exc:
            return RunOutcome(exit_code=None, error=str(exc))
        try:
            client = from_env()
        except (DockerException, requests.RequestException, OSError) as exc:
            return RunOutcome(exit_code=None, error=f"Docker engine unreachable: {exc}")
        try:
            try:
                client.ping()
            except (DockerException, requests.RequestException, OSError) as exc:
                return RunOutcome(exit_code=None, error=f"Docker engine unreachable: {exc}")
            image = req.image or config["default_image"]
            try:
                image_env = _ensure_image(client, image, pull=config["pull"], req=req)
            except DockerRunnerError as exc:
                return RunOutcome(exit_code=None, error=str(exc))
            return self._run_container(client, image, image_env, config, req)
        finally:
            client.close()

    def _run_container(
        self,
        client: DockerClient,
        image: str,
        image_env: dict[str, str],
        config: dict[str, Any],
        req: RunRequest,
    ) -> RunOutcome:
        req.workspace.mkdir(parents=True, exist_ok=True)
        script = "\n".join(
            f"printf '\\033[1;32m$ %s\\033[0m\\n' {_sh_quote(line)}\n{line}" for line in req.script
        )
        env = {k: v for k, v in req.env.items() if k not in HOST_ONLY_ENV}
        options: dict[str, Any] = {}
        if os.getuid() != 0:
            # Files the job writes in the workspace must stay removable by this worker.
            options["user"] = f"{os.getuid()}:{os.getgid()}"
            # A uid without a passwd entry gets HOME=/, unwritable; pip then falls back to
            # `--user` installs under $HOME/.local, whose scripts must be on PATH.
            env["HOME"] = NON_ROOT_HOME
            env["PATH"] = f"{NON_ROOT_HOME}/.local/bin:{image_env.get('PATH', DEFAULT_PATH)}"
        labels = {RUNNER_LABEL: "docker"}
        labels.update({label: req.env[var] for label, var in ENV_LABELS.items() if var in req.env})
        try:
            container = client.containers.create(
                image,
                entrypoint=["/bin/sh", "-c", LAUNCHER, "controlplane-job"],
                command=[script, str(int(req.timeout + KILL_GRACE_SECONDS + BACKSTOP_SECONDS))],
                name=_container_name(req.env),
                working_dir=WORKDIR,
                volumes={str(req.workspace.resolve()): {"bind": WORKDIR, "mode": "rw"}},
                environment=env,
                network_mode=config["network"],
                mem_limit=config["memory"],
                nano_cpus=_nano_cpus(client, config["cpus"]),
                pids_limit=PIDS_LIMIT,
                init=True,  # a PID 1 that forwards signals and reaps zombies
                labels=labels,
                # The output reaches the job log through attach, masked; the engine keeps no
                # second, unmasked copy (nor ships one to a remote log driver).
                log_config=LogConfig(type=LogConfig.types.NONE),
                auto_remove=False,  # removed below, after the exit code has been read
                stdin_open=False,
                tty=False,
                **options,
            )
        except APIError as exc:
            error = f"Docker could not create the container: {_explain(exc)}"
            return RunOutcome(exit_code=None, error=error)
        try:
            req.record(container_entry(container.id), "container")  # before it starts
            return self._supervise(container, config, req)
        finally:
            try:
                container.remove(force=True)
            except NotFound:
                pass
            except (APIError, requests.RequestException) as exc:
                req.log.line(f"could not remove container {container.name}: {exc}")

    def _supervise(
        self, container: Container, config: dict[str, Any], req: RunRequest
    ) -> RunOutcome:
        outcome = RunOutcome(exit_code=None)
        # Attached before the start, like `docker run`: nothing is missed, and the output comes
        # in the chunks the process wrote (the logs API splits it into one frame per line,
        # about 10x slower for chatty jobs).
        stream = container.attach(stdout=True, stderr=True, stream=True, logs=False)
        try:
            container.start()
        except APIError as exc:
            stream.close()
            error = f"Docker could not start the container: {_explain(exc)}"
            return RunOutcome(exit_code=None, error=error)
        deadline = time.monotonic() + req.timeout

        chunks: queue.Queue[Any] = queue.Queue(maxsize=256)  # bounded: backpressure on the reader
        reader = threading.Thread(target=_pump, args=(stream, chunks), daemon=True)
        reader.start()
        exit_status: dict[str, Any] = {}
        waiter = threading.Thread(target=_wait, args=(container, exit_status), daemon=True)
        waiter.start()

        stopping = log_done = cut = False
        last_output = time.monotonic()
        try:
            while True:
                if log_done:
                    waiter.join(timeout=0.1)
                else:
                    data, log_done = _take(chunks)
                    if data:
                        req.log.write(data)
                        last_output = time.monotonic()
                if log_done and not waiter.is_alive():
                    break
                if not stopping and req.cancel.is_set():
                    outcome.canceled = stopping = True
                    _stop(container)
                elif not stopping and time.monotonic() > deadline:
                    outcome.timed_out = stopping = True
                    _stop(container)
                if (
                    not (cut or log_done or waiter.is_alive())
                    and time.monotonic() - last_output > LOG_IDLE_SECONDS
                ):
                    # Should the stream stay open after the container exited, don't hang on it,
                    # but never cut output that is still arriving.
                    cut = True
                    stream.close()
        except BaseException:
            _kill(container)
            stream.close()
            raise
        reader.join(timeout=5)

        outcome.exit_code = _exit_code(container, exit_status)
        state = _state(container)
        if state.get("OOMKilled"):
            req.log.line(f"the container ran out of memory (limit {config['memory']})")
        return outcome


def _config() -> dict[str, Any]:
    network = getattr(settings, "CONTROLPLANE_DOCKER_NETWORK", "host")
    if network not in ALLOWED_NETWORKS:
        raise DockerRunnerError(
            f"CONTROLPLANE_DOCKER_NETWORK must be one of {', '.join(ALLOWED_NETWORKS)}, "
            f"not {network!r}: Docker networks and bridges are not used by this control plane."
        )
    try:
        cpus = float(getattr(settings, "CONTROLPLANE_DOCKER_CPUS", 2.0))
    except (TypeError, ValueError):
        raise DockerRunnerError("CONTROLPLANE_DOCKER_CPUS must be a number.") from None
    if cpus <= 0:
        raise DockerRunnerError("CONTROLPLANE_DOCKER_CPUS must be positive.")
    return {
        "default_image": getattr(settings, "CONTROLPLANE_DOCKER_DEFAULT_IMAGE", "python:3.11-slim"),
        "network": network,
        "memory": getattr(settings, "CONTROLPLANE_DOCKER_MEMORY", "2g"),
        "cpus": cpus,
        "pull": _flag(getattr(settings, "CONTROLPLANE_DOCKER_PULL", False)),
    }


def _flag(value: object) -> bool:
    if isinstance(value, str):  # a raw environment value: "false" must not read as true
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _ensure_image(
    client: DockerClient, image: str, *, pull: bool, req: RunRequest
) -> dict[str, str]:
    """Make sure the image is on the Docker host; return its environment (``Config.Env``)."""
    try:
        found = client.images.get(image)
    except ImageNotFound:
        if not pull:
            raise DockerRunnerError(
                f"image {image} is not present on the Docker host and pulling is off "
                "(CONTROLPLANE_DOCKER_PULL); build or load it there first."
            ) from None
        repository, tag = parse_repository_tag(image)
        req.log.line(f"pulling image {image}")
        try:
            found = client.images.pull(repository, tag=tag or "latest")
        except APIError as exc:
            raise DockerRunnerError(f"could not pull image {image}: {_explain(exc)}") from None
    pairs = (found.attrs.get("Config") or {}).get("Env") or []
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def _nano_cpus(client: DockerClient, cpus: float) -> int:
    # The engine refuses more CPUs than its host has; a remote DOCKER_HOST may have fewer.
    try:
        available = int(client.info().get("NCPU") or 0)
    except (APIError, requests.RequestException):
        available = 0
    if available:
        cpus = min(cpus, float(available))
    return int(cpus * 1e9)


def _container_name(env: dict[str, str]) -> str:
    parts = [env.get(var, "") for var in NAME_PARTS]
    base = re.sub(r"[^a-zA-Z0-9_.-]+", "-", "-".join(p for p in parts if p)).strip("-.")
    suffix = uuid.uuid4().hex[:8]
    return f"cp-{base[:80]}-{suffix}" if base else f"cp-{suffix}"


def _pump(stream: Any, chunks: queue.Queue[Any]) -> None:
    try:
        for chunk in stream:
            chunks.put(chunk)
    except Exception:  # noqa: S110 - a closed or broken stream ends the log, nothing more
        pass
    finally:
        chunks.put(_EOF)


def _take(chunks: queue.Queue[Any]) -> tuple[bytes, bool]:
    """Wait briefly for output; return what has arrived (about CHUNK bytes at most, so the log
    is written in few large pieces) and whether the stream has ended."""
    try:
        item = chunks.get(timeout=0.1)
    except queue.Empty:
        return b"", False
    parts: list[bytes] = []
    size = 0
    while item is not _EOF:
        parts.append(item)
        size += len(item)
        if size >= CHUNK:
            break
        try:
            item = chunks.get_nowait()
        except queue.Empty:
            break
    return b"".join(parts), item is _EOF


def _wait(container: Container, result: dict[str, Any]) -> None:
    try:
        result.update(container.wait())
    except Exception as exc:  # the engine went away; _exit_code falls back to inspect
        result["Error"] = str(exc)


def _stop(container: Container) -> None:
    """SIGTERM (forwarded by the init process), SIGKILL after the grace period, like local."""
    try:
        container.stop(timeout=KILL_GRACE_SECONDS)
    except NotFound:
        pass
    except (APIError, requests.RequestException):
        _kill(container)


def _kill(container: Container) -> None:
    try:
        container.kill()
    except (APIError, requests.RequestException):
        pass  # not running any more, or gone


def _state(container: Container) -> dict[str, Any]:
    try:
        container.reload()
    except (APIError, requests.RequestException):
        return {}
    return container.attrs.get("State", {})


def _exit_code(container: Container, status: dict[str, Any]) -> int | None:
    code = status.get("StatusCode")
    if isinstance(code, int):
        return code
    state = _state(container)
    return state.get("ExitCode") if state.get("Status") == "exited" else None


def _explain(exc: APIError) -> str:
    return str(exc.explanation or exc)
