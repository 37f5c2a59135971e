"""Real Celery worker and beat processes to kill, the figures each fault test prints, and
reading what the jobs themselves wrote down (their ledger lines)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from apps.core.models import AuditEvent
from apps.pipelines.logs import log_path
from apps.pipelines.models import Job
from tests.pipelines.worker import ROOT, process_env, wait_for

# Short windows, given to every process the fault tests start (the same names production
# reads): a lost job is found 6 s after its last heartbeat, the reaper and sweepers run every
# second, a silent deployment is failed after 4 s, services are supervised every second.
FAULT_ENV = {
    "CONTROLPLANE_JOB_HEARTBEAT_TIMEOUT": "6",
    "CONTROLPLANE_REAPER_INTERVAL": "1",
    "CONTROLPLANE_SWEEPER_INTERVAL": "1",
    "CONTROLPLANE_JOB_UNCLAIMED_AFTER": "3",
    "CONTROLPLANE_DEPLOY_STALE_AFTER": "4",
    "CONTROLPLANE_SUPERVISE_INTERVAL": "1",
}
HEARTBEAT_TIMEOUT = int(FAULT_ENV["CONTROLPLANE_JOB_HEARTBEAT_TIMEOUT"])
REAPER_INTERVAL = int(FAULT_ENV["CONTROLPLANE_REAPER_INTERVAL"])
# The longest a lost job may stay "running": found lost, one reaper pass late, its orphans
# ended (1 s grace), and a few seconds of slack for a loaded 2-core machine.
REAPER_WINDOW = HEARTBEAT_TIMEOUT + 2 * REAPER_INTERVAL + 1 + 4


class Process:
    """One ``celery`` process of the test stack, started in a session of its own."""

    kind = "worker"

    def __init__(self, args: list[str], *, env: dict | None = None, name: str = "") -> None:
        self.args = args
        self.extra_env = {**FAULT_ENV, **(env or {})}
        self.name = name
        self.proc: subprocess.Popen | None = None
        tmp = Path(settings.JOB_LOG_DIR).parent
        self.log = tmp / f"{self.kind}-{time.monotonic_ns()}.log"

    def start(self, *, wait: bool = True) -> Process:
        env = process_env(self.extra_env)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(  # noqa: S603 - our own celery
            [sys.executable, "-m", "celery", "-A", "controlplane", *self.args],
            cwd=ROOT,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_ready()
        return self

    def ready_text(self) -> str:
        return " ready."

    def wait_ready(self, timeout: float = 60) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited:\n{self.output()[-3000:]}")
            return self.ready_text() in self.output()

        wait_for(ready, timeout, interval=0.05)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def worker_name(self) -> str:
        """What the executor records as the job's worker (``executor.worker_name``)."""
        return f"{socket.gethostname()}:{self.proc.pid}"

    def kill(self) -> None:
        """kill -9 of the main process only, as the OOM killer does: what it started in
        sessions of their own (jobs, services, containers) is left running."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            # Whatever it left in its own group (the threads pool has none, beat neither).
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self._fh.close()


def worker(queues: str, *, concurrency: int = 1, env: dict | None = None) -> Process:
    return Process(
        [
            "worker",
            "-Q",
            queues,
            "--pool=threads",
            f"--concurrency={concurrency}",
            "--prefetch-multiplier=1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"fault-{os.getpid()}-{time.monotonic_ns()}@%h",
        ],
        env=env,
    )


class Beat(Process):
    kind = "beat"

    def ready_text(self) -> str:
        return "beat: Starting..."


def beat(env: dict | None = None) -> Beat:
    """``celery beat`` alone with the database scheduler, as docker-compose runs it."""
    schedule = Path(settings.JOB_LOG_DIR).parent / f"beat-{time.monotonic_ns()}.db"
    return Beat(
        [
            "beat",
            "-s",
            str(schedule),
            "--scheduler",
            "django_celery_beat.schedulers:DatabaseScheduler",
            "--max-interval",
            "1",
        ],
        env=env,
    )


# --- figures -----------------------------------------------------------------------------


@dataclass
class Figures:
    """What a fault test injected and what it found, printed with the test's result (and in
    the session's summary): the numbers docs/reliability.md quotes."""

    test: str
    faults: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    notes: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        def d(values: dict) -> str:
            return ",".join(f"{k}={v}" for k, v in values.items()) or "-"

        counted = [
            f"{what} expected/recorded/completed="
            f"{self.expected.get(what, '-')}/{self.recorded.get(what, '-')}/"
            f"{self.completed.get(what, '-')}"
            for what in self.expected
        ]
        return (
            f"{self.test}: faults[{d(self.faults)}] {' '.join(counted)} "
            f"lost={self.lost} duplicated={self.duplicated} stuck={self.stuck} "
            f"{d(self.notes)} ({self.seconds:.1f}s)"
        )


REPORTED: list[Figures] = []


def report(figures: Figures) -> None:
    REPORTED.append(figures)
    print(f"\nFAULTS {figures.line()}")


# --- ledgers: what each attempt of a job wrote, outside the control plane ------------------


def ledger_lines(path: Path) -> list[tuple[str, int, float]]:
    """(event, attempt, time) per line ``<event> <attempt> <epoch seconds>``."""
    if not path.exists():
        return []
    out = []
    for raw in path.read_text().splitlines():
        parts = raw.split()
        if len(parts) == 3:
            out.append((parts[0], int(parts[1]), float(parts[2])))
    return out


def overlaps(lines: list[tuple[str, int, float]]) -> int:
    """Pairs of attempts whose ledger lines interleave in time: ran at once."""
    spans: dict[int, tuple[float, float]] = {}
    for _event, attempt, at in lines:
        lo, hi = spans.get(attempt, (at, at))
        spans[attempt] = (min(lo, at), max(hi, at))
    ordered = sorted(spans.values())
    return sum(1 for a, b in zip(ordered, ordered[1:], strict=False) if b[0] < a[1])


def group_alive(pgid: int) -> bool:
    from apps.core.processes import group_alive as alive

    return alive(pgid)


# --- jobs built for fault injection ----------------------------------------------------------
# Each attempt writes ``start``/``end`` lines with its attempt number and the time to a ledger
# outside the control plane, and sleeps long on the attempts a test means to kill, so the kill
# lands mid-job.

LONG_SLEEP = 60  # a killed attempt never gets to its end


@dataclass(frozen=True)
class Plan:
    """How a job is meant to go: ``retries`` and the attempts that sleep long (killed)."""

    name: str
    retries: int
    long_attempts: int  # attempts 1..n sleep LONG_SLEEP

    @property
    def succeeds(self) -> bool:
        return self.long_attempts <= self.retries


RETRY = Plan("retry", retries=1, long_attempts=1)  # killed once, succeeds on attempt 2
TWICE = Plan("twice", retries=2, long_attempts=2)  # killed twice, succeeds on attempt 3
FAIL = Plan("fail", retries=0, long_attempts=1)  # killed once, no retry: "worker lost"
FAIL2 = Plan("fail2", retries=1, long_attempts=2)  # killed on both attempts: "worker lost"
CLEAN = Plan("clean", retries=1, long_attempts=0)  # the control: never killed


def job_spec(name: str, kind: str, plan: Plan, ledgers: Path, *, runner: str = "local") -> dict:
    """A job of ``kind`` (test, build, train) that follows ``plan``. The docker runner cannot
    see the ledger folder: its attempts write their lines to the job log only."""
    stamp = 'echo "{event} $CONTROLPLANE_JOB_ATTEMPT $(date +%s.%N)"'
    ledger = f"{ledgers}/$CONTROLPLANE_RUN_NUMBER-$CONTROLPLANE_JOB_NAME.txt"
    sink = f" | tee -a {ledger}" if runner == "local" else ""
    script = [
        stamp.format(event="start") + sink,
        f'if [ "$CONTROLPLANE_JOB_ATTEMPT" -le {plan.long_attempts} ]; then sleep {LONG_SLEEP}; '
        "else sleep 0.2; fi",
    ]
    options: dict = {"variables": {"PLAN": plan.name}}
    if kind == "train":
        script += [
            "mkdir -p out",
            "echo weights-$CONTROLPLANE_JOB_ATTEMPT > out/model.bin",
            """echo '{"f1": 0.9}' > out/metrics.json""",
        ]
        options |= {"model": "out/model.bin", "metrics": "out/metrics.json"}
    if kind == "build":
        script += ["echo built > built.txt"]
    script.append(stamp.format(event="end") + sink)
    return {
        "name": name,
        "kind": kind,
        "runner": runner,
        "retries": plan.retries,
        "script": script,
        "timeout": 300,
        "options": options,
    }


def is_long(job: Job) -> bool:
    return job.attempt <= _long_attempts(job)


def _long_attempts(job: Job) -> int:
    return PLANS[job.options["variables"]["PLAN"]].long_attempts


PLANS = {p.name: p for p in (RETRY, TWICE, FAIL, FAIL2, CLEAN)}


def started_attempt(job: Job) -> bool:
    """The attempt's script is running: its ``start`` line reached the job log."""
    try:
        text = log_path(job.pk, job.run_id).read_text(errors="replace")
    except OSError:
        return False
    return f"start {job.attempt} " in text


@dataclass
class Kill:
    job_id: int
    attempt: int
    at: float  # epoch seconds
    processes: dict


def reap_latencies(kills: list[Kill]) -> list[float | None]:
    """Seconds from each kill to the reaper's transition of that attempt (None: never)."""
    out: list[float | None] = []
    for kill in kills:
        events = AuditEvent.objects.filter(
            object_id=str(kill.job_id), actor_label="reaper", reason__contains="Worker lost"
        ).order_by("created")
        found = None
        for event in events:
            if event.created.timestamp() >= kill.at:
                found = event.created.timestamp() - kill.at
                break
        out.append(found)
    return out


def ledger_figures(jobs: list[Job], ledgers: Path, figures: Figures) -> None:
    """Duplicated (a job's ``end`` written twice) and overlapping attempts, from the ledgers."""
    duplicated = overlapping = 0
    for job in jobs:
        if job.runner != "local":
            continue
        lines = ledger_lines(ledgers / f"{job.run.number}-{job.name}.txt")
        ends = [a for event, a, _t in lines if event == "end"]
        duplicated += len(ends) > 1
        overlapping += overlaps(lines)
    figures.duplicated = duplicated
    figures.notes["overlapping_attempts"] = overlapping


def wait_until(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


# --- a ledger both runners reach: UDP datagrams to a listener of the test ------------------
# A docker-runner container sees neither the test's folders nor its own workspace after the
# next attempt replaced it, but with network_mode host it reaches 127.0.0.1: each attempt
# sends "<TICK_ID> <run>-<job> <attempt>" ten times a second while it runs ($TICKER, -1: for ever).

TICKER = """\
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
me = "%s %s-%s %s" % (os.environ["TICK_ID"], os.environ["CONTROLPLANE_RUN_NUMBER"],
                      os.environ["CONTROLPLANE_JOB_NAME"], os.environ["CONTROLPLANE_JOB_ATTEMPT"])
n = int(sys.argv[1])
i = 0
while n < 0 or i < n:
    s.sendto(me.encode(), ("127.0.0.1", int(os.environ["TICK_PORT"])))
    i += 1
    time.sleep(0.1)
"""


class TickListener:
    """Collects the ticks: (attempt, receipt time) per "<run>-<job>"."""

    def __init__(self, port: int) -> None:
        import threading

        self.port = port
        self.id = uuid.uuid4().hex  # TICK_ID: ticks of another test's orphans do not count
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.ticks: dict[str, list[tuple[int, float]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            tick_id, key, attempt = data.decode().split(" ")
            if tick_id != self.id:
                continue
            self.ticks.setdefault(key, []).append((int(attempt), time.time()))

    def of(self, job: Job) -> list[tuple[int, float]]:
        return list(self.ticks.get(f"{job.run.number}-{job.name}", []))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def free_port(start: int = 9300, end: int = 9399, kind=socket.SOCK_DGRAM) -> int:
    """A free port of this helper's range (UDP by default; ``socket.SOCK_STREAM`` for TCP)."""
    for port in range(start, end):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{end}")
