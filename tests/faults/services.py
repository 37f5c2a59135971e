"""The services a fault test breaks, each its own instance so the shared ones never stop.

- :class:`RedisServer`: ``redis-server`` on ``FAULTS_REDIS_PORT`` (6390), nothing on disk, killed
  and started again on the same port.
- :class:`PostgresServer`: ``initdb`` into a temporary folder, served on ``FAULTS_PG_PORT``
  (5440), stopped and started again (``pg_ctl``, as the ``postgres`` user when run as root).
- :class:`WebServer`: the control plane under gunicorn, as production runs it.
- :class:`Worker`: a real Celery worker (``tests/pipelines/worker.py``) on any broker; ready
  when it says so in its log, so it needs no round trip through the test's own broker.
- :func:`tmpfs`: a small tmpfs mounted over a folder (a volume that fills up), unmounted after.
- :func:`report`: the figures every fault test prints.

A preferred port that is taken (another checkout's tests, a CI neighbour) is replaced by a free
one the kernel picks.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg2

from tests.pipelines.worker import ROOT, WorkerProcess

PG_BIN = Path(os.environ.get("FAULTS_PG_BIN", "")) if os.environ.get("FAULTS_PG_BIN") else None


def port_or_free(preferred: int) -> int:
    """``preferred`` if nothing listens there, else a free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30, *, up: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            if up:
                return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} did not come {'up' if up else 'down'} in {timeout}s")


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Stop a process we started (its own session: the whole group), SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# --- Redis ------------------------------------------------------------------------------------


class RedisServer:
    """A Redis of the test's own; ``kill()`` is the outage (no persistence: every queued
    message is gone, the harshest case), ``start()`` brings it back on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port_or_free(port or int(os.environ.get("FAULTS_REDIS_PORT", "6390")))
        self.dir = Path(tempfile.mkdtemp(prefix="cp-faults-redis-"))
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> "RedisServer":
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_port(self.port)
        return self

    def kill(self) -> None:
        """kill -9: the broker is gone at once, with what it held."""
        _stop(self.proc, signal.SIGKILL)
        wait_port(self.port, up=False)

    def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- PostgreSQL -------------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    if PG_BIN is not None:
        return str(PG_BIN / name)
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if found:
        return str(found[-1])  # the newest installed
    return shutil.which(name) or name


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


class PostgresServer:
    """A PostgreSQL cluster of the test's own in a temporary folder (fsync off: nothing here
    needs to survive a power cut, and it starts in well under a second)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port_or_free(port or int(os.environ.get("FAULTS_PG_PORT", "5440")))
        self.dir = Path(tempfile.mkdtemp(prefix="cp-faults-pg-"))
        self.data = self.dir / "data"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
                + ["-E", "UTF8", "--no-sync"]
            ),
            check=True,
            capture_output=True,
        )

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                [_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log")]
                + ["-o", options, "-w", *args]
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> "PostgresServer":
        self._ctl("start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast``: what a restart for an upgrade or a failover does — every session is
        ended at once (their clients get "terminating connection due to administrator
        command"), then the server stops accepting connections."""
        self._ctl("stop", "-m", mode)

    def connect(self, dbname: str = "postgres"):
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname)
        conn.autocommit = True
        return conn

    def query(self, dbname: str, sql: str, params: tuple = ()) -> list[tuple]:
        with contextlib.closing(self.connect(dbname)) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> None:
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'CREATE DATABASE "{name}"')

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the control plane's processes ------------------------------------------------------------


def stack_env(
    *, database_url: str, redis_url: str, tmp: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a web or worker process of the test's own stack."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings.test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CONTROLPLANE_TEST_TMP": str(tmp),
        "LOG_LEVEL": "INFO",
        # The safety nets at a test's pace: beat every 2 s, a queued job re-sent after 5 s.
        "CONTROLPLANE_SWEEPER_INTERVAL": "2",
        "CONTROLPLANE_REAPER_INTERVAL": "2",
        "CONTROLPLANE_JOB_UNCLAIMED_AFTER": "5",
        **(extra or {}),
    }


def manage(env: Mapping[str, str], *args: str, stdin: str | None = None) -> str:
    """``manage.py <args>`` in a process of its own with ``env``; its stdout."""
    out = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{out.stderr[-4000:]}")
    return out.stdout


class WebServer:
    """The control plane under gunicorn (sync workers, as in production) on a port of its own."""

    def __init__(self, env: Mapping[str, str], *, port: int | None = None, workers: int = 2):
        self.env = dict(env)
        self.port = port_or_free(port or int(os.environ.get("FAULTS_WEB_PORT", "9400")))
        self.workers = workers
        self.log = Path(env["CONTROLPLANE_TEST_TMP"]) / f"web-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "WebServer":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "controlplane.wsgi:application"]
            + ["-b", f"127.0.0.1:{self.port}", "-w", str(self.workers), "--timeout", "60"]
            + ["--access-logfile", "-", "--error-logfile", "-", "--log-level", "info"],
            cwd=ROOT,
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        fh.close()
        deadline = time.monotonic() + 60
        import requests

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"gunicorn did not come up:\n{self.log.read_text()[-4000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        _stop(self.proc)


class Worker(WorkerProcess):
    """A real Celery worker (threads pool, ``-B`` for beat) of the test's own stack: ready once
    its log says so, so it may use a broker the test process does not publish to."""

    def __init__(self, env: Mapping[str, str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.stack_env = dict(env)
        self.log = Path(env["CONTROLPLANE_TEST_TMP"]) / f"worker-{time.monotonic_ns()}.log"

    def start(self) -> "Worker":
        # WorkerProcess puts the test's own database and broker first; ours win.
        self.extra_env = {**self.stack_env, **self.extra_env}
        return super().start()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.log.exists() and " ready." in self.log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"The worker did not come up:\n{self.log.read_text()[-4000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# --- volumes ----------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted over ``path`` (created if missing) for the block: a small
    volume that fills up. Needs root (CI and these machines run the suite as root)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        # Lazy: a worker's open file on it must not leave the mount behind.
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def used_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


# --- figures ----------------------------------------------------------------------------------


def report(capsys, title: str, **figures) -> str:
    """Print one test's figures, past pytest's capture (they belong in the CI log):
    ``FAULTS <title>: injected=… expected=… recorded=… completed=… lost=… duplicated=…``."""
    line = f"FAULTS {title}: " + ", ".join(f"{k.replace('_', ' ')}={v}" for k, v in figures.items())
    with capsys.disabled():
        print(f"\n{line}", flush=True)
    return line
