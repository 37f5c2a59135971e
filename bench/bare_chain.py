"""The floor for the pipeline benchmarks: a bare Celery chain of three tasks, each running
``subprocess.run(["true"])``, on the same broker as the control plane and through a real worker
(same pool, concurrency, prefetch and acks as ours), with no Django, database or Git.

The worker imports this module (``celery -A bare_chain worker``); the benchmark process calls
:func:`measure`. The broker comes from the environment: ``BARE_BROKER_URL`` (Redis: the same
server and database as the control plane, its own queue) or ``filesystem://`` with
``BARE_BROKER_DIR`` (the same embedded transport and polling interval as ours).
"""

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from celery import Celery, chain

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlplane.broker import install as install_embedded_broker  # noqa: E402

install_embedded_broker()
QUEUE = "bare"


def _transport_options() -> dict:
    if not os.environ.get("BARE_BROKER_URL", "").startswith("filesystem://"):
        return {}
    folder = Path(os.environ["BARE_BROKER_DIR"])
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
        "polling_interval": float(os.environ.get("BARE_POLLING_INTERVAL", "0.02")),
    }


# Not the current app: the benchmark process sends the control plane's tasks too.
app = Celery("bare", broker=os.environ.get("BARE_BROKER_URL", "memory://"), set_as_current=False)
app.conf.update(
    broker_transport_options=_transport_options(),
    task_default_queue=QUEUE,
    task_ignore_result=True,
    result_backend=None,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bare.step")
def step(marker: str = "") -> None:
    subprocess.run(["true"], check=True)  # noqa: S607
    if marker:
        Path(marker).write_text("done")


def _wait(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"the bare chain did not finish ({path})")
        time.sleep(0.001)


class Floor:
    """A worker for the bare app, started once; :meth:`once` times one chain (ms, from sending
    the chain to the last task's end). A benchmark alternates its own rounds with these, so
    the load of the moment weighs on both alike (a 2-core machine shared with other work
    changes speed within a minute)."""

    def __init__(self, *, broker_url: str, var: Path, polling_interval: float):
        env = dict(os.environ)
        env.update(
            BARE_BROKER_URL=broker_url,
            BARE_BROKER_DIR=str(var / "bare-broker"),
            BARE_POLLING_INTERVAL=str(polling_interval),
        )
        for key in ("BARE_BROKER_URL", "BARE_BROKER_DIR", "BARE_POLLING_INTERVAL"):
            os.environ[key] = env[key]
        app.conf.broker_url = broker_url
        app.conf.broker_transport_options = _transport_options()
        self._log = open(var / "bare-worker.log", "ab")  # noqa: SIM115
        self._worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bare_chain",
                "worker",
                "-Q",
                QUEUE,
                "--pool=threads",
                "--concurrency=4",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "WARNING",
            ],
            cwd=Path(__file__).resolve().parent,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._marks = Path(tempfile.mkdtemp(prefix="cp-bare-", dir=var))
        for _ in range(2):  # warm-up: the worker's connection and first imports
            self.once(timeout=60)

    def once(self, timeout: float = 30) -> float:
        marker = self._marks / uuid.uuid4().hex
        started = time.perf_counter()
        chain(step.si(), step.si(), step.si(str(marker))).apply_async()
        _wait(marker, timeout=timeout)
        return (time.perf_counter() - started) * 1000

    def stop(self) -> None:
        self._worker.terminate()
        try:
            self._worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._worker.kill()
        self._log.close()


def measure(*, rounds: int, broker_url: str, var: Path, polling_interval: float) -> list[float]:
    """``rounds`` chains in a row on a :class:`Floor` of their own (after 2 warm-ups)."""
    floor = Floor(broker_url=broker_url, var=var, polling_interval=polling_interval)
    try:
        return [floor.once() for _ in range(rounds)]
    finally:
        floor.stop()
