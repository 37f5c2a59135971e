"""Shared set-up for the benchmarks: a throw-away database, var folder and worker.

Default stack: PostgreSQL + Redis on 127.0.0.1 (what production runs, ``--stack production``);
``--stack embedded`` (or ``--embedded``) uses SQLite and the filesystem broker instead. Nothing
here touches the demo's ``var/``. ``BENCH_DATABASE`` names the PostgreSQL database (default
``cp_bench_<script>``) and ``BENCH_REDIS_DB`` the Redis database (default 13), so that several
people can run benchmarks on one machine at once.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(description: str, **extra) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--stack",
        choices=("production", "embedded"),
        default="production",
        help="production: PostgreSQL + Redis (default); embedded: SQLite + filesystem broker",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="the same as --stack embedded",
    )
    for name, kwargs in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", **kwargs)
    args = parser.parse_args()
    args.embedded = args.embedded or args.stack == "embedded"
    args.stack = "embedded" if args.embedded else "production"
    return args


def broker_url(args: argparse.Namespace) -> str:
    """The broker URL the worker of :func:`setup` uses (after ``setup``)."""
    from django.conf import settings

    return settings.CELERY_BROKER_URL


def setup(args: argparse.Namespace, name: str) -> Path:
    """Point Django at a fresh database and var folder, migrate, and return the var folder."""
    var = Path(tempfile.mkdtemp(prefix=f"cp-bench-{name}-"))
    os.environ["CONTROLPLANE_VAR_DIR"] = str(var)
    os.environ["DJANGO_SETTINGS_MODULE"] = "controlplane.settings.local"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_DEBUG"] = "false"
    if args.embedded:
        os.environ.pop("DATABASE_URL", None)
        os.environ.pop("REDIS_URL", None)
    else:
        db = os.environ.get("BENCH_DATABASE") or f"cp_bench_{name}"
        for sql in (f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}"):
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql],
                check=True,
                capture_output=True,
            )
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db}"
        if os.environ.get("BENCH_PGLOG"):
            # Every statement of every process, with its time, in the PostgreSQL server log.
            os.environ["DATABASE_URL"] += "?options=-c%20log_min_duration_statement%3D0"
        redis_db = os.environ.get("BENCH_REDIS_DB", "13")  # a Redis db of its own
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:6379/{redis_db}"
        subprocess.run(["redis-cli", "-n", redis_db, "flushdb"], check=True, capture_output=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return var


def start_worker(
    concurrency: int = 4,
    queues: str = "default,test,build,deploy,train,monitor",
    name: str = "",
    *,
    beat: bool = False,
):
    """A real Celery worker process on the same settings (threads pool, like the demo);
    ``name`` tells several apart (their node names and logs); with ``beat``, running beat too
    (``-B``, the database scheduler), as the demo's worker does."""
    log_name = f"worker-{name}.log" if name else "worker.log"
    log = open(Path(os.environ["CONTROLPLANE_VAR_DIR"]) / log_name, "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "controlplane",
            "worker",
            "-Q",
            queues,
            "--pool=threads",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
            *([f"--hostname={name}@%h"] if name else []),
            *(
                ["-B", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"]
                if beat
                else []
            ),
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    from apps.core.models import WorkerPing
    from apps.core.tasks import worker_ping_task

    ping = WorkerPing.objects.create()
    worker_ping_task.delay(ping.pk)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ping.refresh_from_db()
        if ping.answered_at:
            return proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(
        "the worker did not start; see worker.log in " + os.environ["CONTROLPLANE_VAR_DIR"]
    )


def profile(proc):
    """With ``BENCH_PYSPY=<file>``, sample the worker with py-spy (installed apart, e.g. in its
    own virtualenv; ``BENCH_PYSPY_BIN``) into collapsed stacks, idle threads included."""
    out = os.environ.get("BENCH_PYSPY")
    if not out:
        return None
    return subprocess.Popen(
        [
            os.environ.get("BENCH_PYSPY_BIN", "py-spy"),
            "record",
            "--pid",
            str(proc.pid),
            "--idle",
            "--threads",
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            out,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profile(spy) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def cleanup(var: Path) -> None:
    shutil.rmtree(var, ignore_errors=True)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": p95,
        "min": ordered[0],
        "max": ordered[-1],
    }


def stack_name(args) -> str:
    return "SQLite + filesystem broker" if args.embedded else "PostgreSQL + Redis"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn(
    app: str, port: int, *, cwd: Path, workers: int, timeout: int | None = None
) -> subprocess.Popen:
    """Serve ``app`` with gunicorn on 127.0.0.1:``port`` (its own session, so a benchmark can
    stop the whole group); return once it accepts connections."""
    command = [sys.executable, "-m", "gunicorn", app, "-b", f"127.0.0.1:{port}"]
    command += ["-w", str(workers)] + (["--timeout", str(timeout)] if timeout else [])
    command += ["--access-logfile", "/dev/null", "--error-logfile", "-", "--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=cwd, env=dict(os.environ), start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"gunicorn {app} did not start")


def time_pages(client, cases: dict[str, str], requests: int) -> dict[str, tuple[int, float, float]]:
    """Each case's URL through the Django test client after 5 warm-up requests: (queries one
    request makes, p50 ms, p95 ms) over ``requests`` requests, every answer a 200."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    results = {}
    for name, url in cases.items():
        for _ in range(5):
            assert client.get(url).status_code == 200, url  # warm
        with CaptureQueriesContext(connection) as ctx:
            client.get(url)
        queries = len(ctx.captured_queries)  # now: the next request resets the query log
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        times.sort()
        results[name] = (
            queries,
            statistics.median(times),
            times[int(len(times) * 0.95) - 1],
        )
    return results
