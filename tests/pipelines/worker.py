"""Start a real Celery worker process against the test database and broker."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] or ""
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def process_env(extra: dict) -> dict:
    """The environment of a celery process on the test stack: this test's database, folders."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings.test",
        "DATABASE_URL": database_url(),
        "CONTROLPLANE_TEST_TMP": str(Path(settings.JOB_LOG_DIR).parent),
        "LOG_LEVEL": "INFO",
        **extra,
    }


class WorkerProcess:
    def __init__(
        self,
        *,
        concurrency: int = 2,
        extra_env: dict | None = None,
        beat: bool = False,
        queues: str = "default,test,build,deploy,train,monitor",
    ) -> None:
        self.concurrency = concurrency
        self.queues = queues
        self.beat = beat
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.log = Path(settings.JOB_LOG_DIR).parent / f"worker-{time.monotonic_ns()}.log"

    def start(self) -> "WorkerProcess":
        env = process_env(self.extra_env)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "controlplane",
                "worker",
                "-Q",
                self.queues,
                "--pool=threads",
                f"--concurrency={self.concurrency}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
                # -B: the worker runs beat too (the sweeper and the reaper on their schedule).
                *(
                    ["-B", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"]
                    if self.beat
                    else []
                ),
            ],
            cwd=ROOT,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 60) -> None:
        from apps.core.models import WorkerPing
        from apps.core.tasks import worker_ping_task

        ping = WorkerPing.objects.create()
        deadline = time.monotonic() + timeout
        worker_ping_task.delay(ping.pk)
        while time.monotonic() < deadline:
            ping.refresh_from_db()
            if ping.answered_at:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"The worker did not come up:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        """kill -9, as a crash or the OOM killer would."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def wait_for(predicate, timeout: float = 60, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout}s waiting for {predicate}")
