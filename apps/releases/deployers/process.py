"""The process deployer, the embedded default: the release's bundle runs as a plain process on
the worker's host, no Docker needed. See docs/deployers.md.

Files under ``CONTROLPLANE_DEPLOY_DIR``:

* ``releases/<digest[:16]>/``: a bundle, extracted once (to a temporary folder, then renamed);
* ``venvs/<sha256>/``: a virtualenv per ``requirements.txt`` and Python, built once under a lock;
* ``pip-cache/``: pip's cache, shared by every build;
* ``<project>/<environment>/``: ``state.json`` (what serves), ``<deployment>.env.json`` (the
  service's variables, mode 0600, kept out of the state because they may hold secrets),
  ``<deployment>.log`` (the service's output), ``.lock`` and, while a deploy switches,
  ``switch.json`` (what it started, see below).

The switch is the health-gated one of ``switch.py``, as with the docker deployer: a candidate on
a free side port first, then the old process stops and the new one starts on the real port; when
that fails, the old release is started again from its state. Services listen on ``HOST``
(127.0.0.1 unless the environment's ``host`` setting or a ``HOST`` variable says otherwise) and
run in their own session, so they outlive the worker; :func:`supervise` (a periodic task)
restarts those that died.

A switch interrupted half-way (the worker killed) leaves ``switch.json`` behind, and the lock
free (a dead process holds no ``flock``). The next deploy, stop or supervisor pass of that
environment undoes it under the lock (:func:`recover_switch`): every process the switch started
that is not the one ``state.json`` says serves is stopped; the supervisor then starts the
serving release again if the switch had stopped it. The deployment itself is failed as "worker
lost" by ``releases.sweep_deployments``, so the records and what serves agree: the previous
release, exactly one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from django.conf import settings

from apps.core.processes import reap, start_time, stop_group

from .base import DEFAULT_HOST, DeployError, DeployRequest, DeployResult, require_port, service_host
from .health import Health, wait_healthy
from .switch import Switch

STATE = "state.json"
# A switch in progress: what it started, so that an interrupted one can be undone.
SWITCH = "switch.json"
# Top-level folders of the deploy dir that are not projects.
RESERVED = ("releases", "venvs", "pip-cache")
# Worker variables pip may need to reach the package index (mirrors, proxies, certificates).
PIP_PASSTHROUGH = re.compile(
    r"^(PIP_\w+|(HTTPS?|NO|ALL)_PROXY|(https?|no|all)_proxy|SSL_CERT_\w+|REQUESTS_CA_BUNDLE)$"
)
TAIL_BYTES = 64 * 1024


def deploy_dir() -> Path:
    return Path(settings.CONTROLPLANE_DEPLOY_DIR)


class ProcessDeployer:
    name = "process"

    def deploy(self, request: DeployRequest) -> DeployResult:
        require_port(request)
        service_host(request)  # a bad host setting fails before anything starts
        if not request.command.strip():
            raise DeployError(
                "The release has no serve command (serve.command in .controlplane.yml): the "
                "process deployer needs one to start the service."
            )
        if request.bundle_path is None or not Path(request.bundle_path).is_file():
            raise DeployError(f"The release's bundle is missing ({request.bundle_path}).")
        root = deploy_dir()
        here = env_dir(root, request.project, request.environment)
        with _lock(here / ".lock"):
            for line in recover_switch(here):
                request.log(line)
            release_dir = _extract(
                root, Path(request.bundle_path), request.bundle_digest, request.log
            )
            started = time.monotonic()
            venv, built = _venv(root, release_dir, request.log)
            details: dict[str, Any] = {"release_dir": str(release_dir), "venv": str(venv)}
            if built:
                details["venv_build_seconds"] = round(time.monotonic() - started, 3)
            return _ProcessSwitch(request, here, release_dir, venv, details).run()

    def stop(self, *, project: str, environment: str) -> None:
        here = env_dir(deploy_dir(), project, environment, create=False)
        if not here.is_dir():
            return
        with _lock(here / ".lock"):
            recover_switch(here)
            state = _read_state(here)
            if state is None:
                return
            _stop(state)
            (here / STATE).unlink(missing_ok=True)
            (here / state["env_file"]).unlink(missing_ok=True)

    def status(self, *, project: str, environment: str) -> dict:
        state = _read_state(env_dir(deploy_dir(), project, environment, create=False))
        if state is None:
            return {"running": False, "release": ""}
        keys = ("release", "deployment_id", "pid", "port", "started", "restarts", "log", "cwd")
        status = {"running": _alive(state), **{k: state.get(k) for k in keys}}
        return {**status, "host": state.get("host") or DEFAULT_HOST}

    def supervise(self) -> list[dict]:
        return supervise()


def supervise(root: Path | None = None) -> list[dict]:
    """Restart every service whose process died (same command, port and variables).

    Called every few seconds by a periodic task: services outlive the worker that started them,
    so nothing else would notice a crash. Environments being deployed (their lock is held) are
    skipped. Returns what was restarted (or failed to restart).
    """
    root = root or deploy_dir()
    restarted = []
    folders = {p.parent for name in (STATE, SWITCH) for p in root.glob(f"*/*/{name}")}
    for here in sorted(folders):
        if here.parent.name in RESERVED:
            continue
        with _lock(here / ".lock", blocking=False) as locked:
            undone = recover_switch(here) if locked else []
            if undone:
                entry = {"project": here.parent.name, "environment": here.name}
                restarted.append({**entry, "recovered": undone})
            state = _read_state(here) if locked else None
            if state is None or _alive(state):
                continue
            _stop(state)  # whatever is left of its process group
            state["restarts"] = state.get("restarts", 0) + 1
            entry = {"project": here.parent.name, "environment": here.name}
            entry.update(release=state["release"], port=state["port"], restarts=state["restarts"])
            try:
                _spawn(
                    state, _read_env(here / state["env_file"]), state["port"], Path(state["log"])
                )
            except (OSError, ValueError) as exc:
                entry["error"] = str(exc)
            else:
                _append(state["log"], f"[supervisor] restarted (restart #{state['restarts']})")
                entry["pid"] = state["pid"]
            _write_json(here / STATE, state)
            restarted.append(entry)
    return restarted


def recover_switch(here: Path) -> list[str]:
    """Undo a switch that was interrupted (its ``switch.json`` is there while nobody holds the
    lock, which the caller holds now): stop what it started, unless that is what ``state.json``
    says serves (it got as far as recording the new release). Returns what it did, as lines."""
    try:
        journal = json.loads((here / SWITCH).read_text())
    except (OSError, ValueError):
        (here / SWITCH).unlink(missing_ok=True)
        return []
    state = _read_state(here) or {}
    serving = (state.get("pid"), state.get("pid_start"))
    lines = [
        f"[recovery] the switch to {journal.get('release')} (deployment "
        f"{journal.get('deployment_id')}) was interrupted; undoing it"
    ]
    for started in journal.get("started", []):
        if (started.get("pid"), started.get("pid_start")) == serving:
            continue  # the release state.json records: it serves
        if _alive(started):
            _stop(started)
            lines.append(f"[recovery] stopped pid {started['pid']} (port {started['port']})")
    if journal.get("env_file") and journal["env_file"] != state.get("env_file"):
        (here / journal["env_file"]).unlink(missing_ok=True)
    (here / SWITCH).unlink(missing_ok=True)
    if state.get("log"):
        for line in lines:
            _append(state["log"], line)
    return lines


def prune(root: Path | None = None, *, keep: int = 5, min_age: float = 3600) -> dict:
    """Delete extracted releases and virtualenvs no service uses, keeping the ``keep`` most
    recently used others (quick rollbacks) and anything touched in the last ``min_age``
    seconds (a deploy may be building it right now). Returns what was removed."""
    root = root or deploy_dir()
    in_use: set[Path] = set()
    for state_file in root.glob(f"*/*/{STATE}"):
        if state_file.parent.parent.name in RESERVED:
            continue
        state = _read_state(state_file.parent) or {}
        in_use.update(Path(state[k]) for k in ("cwd", "venv") if state.get(k))
    removed: dict[str, list[str]] = {"releases": [], "venvs": []}
    now = time.time()
    for kind in ("releases", "venvs"):
        folders = sorted(
            (p for p in (root / kind).glob("*") if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        spare = [p for p in folders if p not in in_use]
        for folder in spare[keep:]:
            if now - folder.stat().st_mtime < min_age:
                continue
            if kind == "venvs":
                # Built under venvs/<key>.lock: skip one being (re)built right now. The lock
                # file stays (removing it could let two builders hold "the" lock at once).
                with _lock(folder.parent / f"{folder.name}.lock", blocking=False) as locked:
                    if locked:
                        shutil.rmtree(folder, ignore_errors=True)
                if not locked:
                    continue
            else:
                shutil.rmtree(folder, ignore_errors=True)
            removed[kind].append(folder.name)
    return removed


def env_dir(root: Path, project: str, environment: str, *, create: bool = True) -> Path:
    parts = [re.sub(r"[^A-Za-z0-9_.-]+", "-", p).strip(".") for p in (project, environment)]
    if not all(parts) or parts[0] in RESERVED:
        raise DeployError(
            f"The process deployer cannot keep files for {project}/{environment}: "
            f"rename the project (the names {', '.join(RESERVED)} are its own folders)."
        )
    path = root.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


class _Started(NamedTuple):
    proc: subprocess.Popen
    host: str  # where it listens
    log: Path
    offset: int  # where its output starts in the log


class _ProcessSwitch(Switch[dict, _Started]):
    """The switch (``switch.py``) with processes: a release is started from a state (command,
    folder, virtualenv, variables file); the previous one is started again from its own."""

    kind = "process"
    errors = (OSError, ValueError)  # e.g. the release folder vanished, an unreadable env file

    def __init__(
        self, request: DeployRequest, here: Path, release_dir: Path, venv: Path, details: dict
    ):
        super().__init__(request, details)
        self.here = here
        self.state: dict[str, Any] = {
            "release": request.release,
            "deployment_id": request.deployment_id,
            "bundle_digest": request.bundle_digest,
            "command": request.command,
            "cwd": str(release_dir),
            "venv": str(venv),
            "env_file": f"{request.deployment_id}.env.json",
            "env_keys": sorted(request.env),  # names only: the values may be secrets
            "log": str(here / f"{request.deployment_id}.log"),
            "port": request.port,
            "host": self.host,
            "restarts": 0,
        }
        # Written before anything starts, rewritten as each process starts (recover_switch).
        self.journal: dict[str, Any] = {
            "deployment_id": request.deployment_id,
            "release": request.release,
            "env_file": self.state["env_file"],
            "started": [],
        }
        _write_json(here / SWITCH, self.journal)
        _write_json(here / self.state["env_file"], request.env, mode=0o600)

    def run(self) -> DeployResult:
        try:
            return super().run()
        finally:  # not reached when the worker is killed: then recover_switch undoes it
            (self.here / SWITCH).unlink(missing_ok=True)

    def find_previous(self) -> dict | None:
        return _read_state(self.here)

    def release_of(self, previous: dict) -> str:
        return previous["release"]

    def describe_previous(self, previous: dict) -> str:
        return f"{previous['release']} (pid {previous['pid']})"

    def start(self, port: int, *, candidate: bool) -> _Started:
        what = "candidate" if candidate else "service"
        log = Path(self.state["log"])
        _append(log, f"[deployer] starting the {what} of {self.request.release} on port {port}")
        offset = log.stat().st_size
        proc = _spawn(self.state, self.request.env, port, log)
        # TRICKY: recorded right after the spawn; a kill -9 between the two (microseconds)
        # would leave this one process unrecorded.
        self.journal["started"].append(
            {"pid": proc.pid, "pid_start": self.state["pid_start"], "port": port}
        )
        _write_json(self.here / SWITCH, self.journal)
        return _Started(proc, self.host, log, offset)

    def check(self, running: _Started, port: int) -> Health:
        proc, host, log, offset = running
        return wait_healthy(
            port=port,
            path=self.request.health_path,
            timeout=self.request.health_timeout,
            died=lambda: (
                None if proc.poll() is None else f"the process exited with code {proc.returncode}"
            ),
            output=lambda: _tail(log, offset),
            host=host,
        )

    def discard(self, running: _Started) -> None:
        _stop(self.state)

    def stop_previous(self, previous: dict) -> None:
        _stop(previous)

    def restart_previous(self, previous: dict) -> tuple[_Started, int]:
        log = Path(previous["log"])
        offset = log.stat().st_size if log.exists() else 0
        env = _read_env(self.here / previous["env_file"])
        proc = _spawn(previous, env, previous["port"], log)
        _write_json(self.here / STATE, previous)
        host = previous.get("host") or DEFAULT_HOST
        return _Started(proc, host, log, offset), previous["port"]

    def commit(self, running: _Started, previous: dict | None) -> str:
        _write_json(self.here / STATE, self.state)
        if previous is not None and previous["env_file"] != self.state["env_file"]:
            (self.here / previous["env_file"]).unlink(missing_ok=True)
        self.details.update(pid=self.state["pid"], port=self.request.port, log=self.state["log"])
        return f"pid {self.state['pid']}"

    def abandon(self) -> None:
        if self.previous is None or self.previous["env_file"] != self.state["env_file"]:
            (self.here / self.state["env_file"]).unlink(missing_ok=True)


# --- the bundle and the virtualenv ------------------------------------------------------------


def _extract(root: Path, bundle: Path, digest: str, log: Callable[[str], None]) -> Path:
    """The bundle's files in ``releases/<digest[:16]>/``, extracted once."""
    releases = root / "releases"
    releases.mkdir(parents=True, exist_ok=True)
    name = (digest or "sha256:" + _sha256(bundle)).split(":")[-1][:16]
    dest = releases / name
    if dest.is_dir():
        return dest
    actual = "sha256:" + _sha256(bundle)
    if digest and digest != actual:
        raise DeployError(f"The bundle's digest is {actual}, not {digest}: it was changed.")
    log(f"extracting the bundle into {dest}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=releases))
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            for member in tar.getmembers():
                _check_member(member)
            # The "data" filter (Python 3.11.4+) also drops setuid bits and odd permissions.
            options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, **options)  # noqa: S202 - every member was checked above
        os.chmod(tmp, 0o755)  # noqa: S103 - mkdtemp's 0700; the files are code, not secrets
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.is_dir():  # not a concurrent deploy that won the race: a real error
                raise
            shutil.rmtree(tmp)
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DeployError(f"The bundle {bundle} cannot be extracted: {exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _check_member(member: tarfile.TarInfo) -> None:
    """Refuse anything that would land outside the release folder, or is not a file."""
    name = member.name

    def escapes(path: str) -> bool:
        return path.startswith("/") or posixpath.normpath(path).split("/")[0] == ".."

    bad = escapes(name) or ".." in name.split("/")
    if member.issym():
        bad = bad or escapes(posixpath.join(posixpath.dirname(name), member.linkname))
    elif member.islnk():
        bad = bad or escapes(member.linkname)
    elif not (member.isfile() or member.isdir()):
        bad = True
    if bad:
        raise DeployError(
            f"The bundle has an unsafe member {name!r} (an absolute path, '..', a link out of "
            "the bundle or a device): refused."
        )


def _venv(root: Path, release_dir: Path, log: Callable[[str], None]) -> tuple[Path, bool]:
    """The virtualenv for the bundle's requirements.txt; built unless one exists already."""
    requirements = release_dir / "requirements.txt"
    wanted = requirements.read_bytes() if requirements.is_file() else b""
    # Only comments and blank lines: nothing to install, no pip needed (a much faster build).
    install = any(
        line.strip() and not line.strip().startswith(b"#") for line in wanted.splitlines()
    )
    python = getattr(sys, "_base_executable", "") or shutil.which("python3") or ""
    if not python:
        raise DeployError("No python3 on the worker to build the service's virtualenv with.")
    version = subprocess.run(  # noqa: S603 - a fixed command
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    key = hashlib.sha256(b"\0".join([wanted, version.encode(), python.encode()])).hexdigest()
    venvs = root / "venvs"
    venvs.mkdir(parents=True, exist_ok=True)
    venv = venvs / key
    # TRICKY: two deploys of one requirements.txt must not build one folder at once; the second
    # waits here and then finds the marker.
    with _lock(venvs / f"{key}.lock"):
        if (venv / ".ready").exists():
            log(f"virtualenv {venv} (reused)")
            return venv, False
        shutil.rmtree(venv, ignore_errors=True)  # a build that died half-way
        log(f"building the virtualenv {venv}")
        outer_pip = _worker_pip()
        # The worker's own pip can install into the new venv: no pip copied into every venv
        # (ensurepip takes ~8 s); without one, the venv gets its own.
        own_pip = install and not outer_pip
        create = [python, "-m", "venv", str(venv)] + ([] if own_pip else ["--without-pip"])
        _run_logged(create, log, cwd=release_dir)
        if install:
            target = str(venv / "bin" / "python")
            pip = [*outer_pip, "--python", target] if outer_pip else [target, "-m", "pip"]
            pip += [
                "install",
                "--disable-pip-version-check",
                "--cache-dir",
                str(root / "pip-cache"),
            ]
            _run_logged([*pip, "-r", str(requirements)], log, cwd=release_dir)
        (venv / ".ready").touch()
    return venv, True


def _worker_pip() -> list[str]:
    """``python -m pip`` of the worker's interpreter when it can target another Python."""
    try:
        version = tuple(int(p) for p in importlib.metadata.version("pip").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return []
    return [sys.executable, "-m", "pip"] if version >= (22, 3) else []  # --python came in 22.3


def _run_logged(cmd: list[str], log: Callable[[str], None], *, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if PIP_PASSTHROUGH.match(k)}
    env.update(PATH=os.environ.get("PATH", os.defpath), HOME=os.environ.get("HOME", "/"))
    env["LANG"] = os.environ.get("LANG", "C.UTF-8")
    last: deque[str] = deque(maxlen=10)
    proc = subprocess.Popen(  # noqa: S603 - python -m venv / pip, no shell
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None  # noqa: S101 - for the type checker
    for line in proc.stdout:
        log(line.rstrip("\n"))
        last.append(line.rstrip("\n"))
    if proc.wait():
        tail = "\n".join(last)
        raise DeployError(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}):\n{tail}")


# --- processes --------------------------------------------------------------------------------


def _spawn(state: dict, env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    """Start the service in its own session (it outlives the worker); record pid in ``state``."""
    venv = state["venv"]
    service_env = {
        "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "VIRTUAL_ENV": venv,
        "PYTHONUNBUFFERED": "1",  # output reaches the log (and a failure message) at once
        **env,
        # Where it listens: a state written before there was a host setting gets the default.
        "HOST": state.get("host") or DEFAULT_HOST,
        "PORT": str(port),
    }
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - the release's own serve command
            ["/bin/sh", "-c", state["command"]],
            cwd=state["cwd"],
            env=service_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state.update(pid=proc.pid, pid_start=start_time(proc.pid), started=_now())
    return proc


def _alive(state: dict) -> bool:
    pid = state.get("pid")
    if not pid:
        return False
    reap(pid)
    start = start_time(pid)
    if start is not None or Path("/proc/self/stat").exists():
        # Same start time: the same process, not another one that got its pid since.
        return start is not None and start == state.get("pid_start")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(state: dict) -> None:
    """Stop the service's process group (SIGTERM, then SIGKILL: ``core.processes``)."""
    pid = state.get("pid")
    if not pid:
        return
    start = start_time(pid)
    if start is not None and start != state.get("pid_start"):
        return  # the pid is another program's now, so the group that was ours is gone
    stop_group(pid)


# --- files ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            locked = False
        else:
            locked = True
        try:
            yield locked
        finally:
            if locked:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _read_state(here: Path) -> dict | None:
    try:
        return json.loads((here / STATE).read_text())
    except (OSError, ValueError):
        return None


def _read_env(path: Path) -> dict[str, str]:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_json(path: Path, data: Any, *, mode: int = 0o644) -> None:
    """Written to a temporary name and renamed: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), mode)
            json.dump(data, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _append(log: str | Path, line: str) -> None:
    with open(log, "a") as fh:
        fh.write(f"{_now()} {line}\n")


def _tail(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(offset, size - TAIL_BYTES))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
