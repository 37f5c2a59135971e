"""Redis down 30 s while 200 signed GitHub pushes arrive (issue 11, "Broker down").

Real processes on a Redis of the test's own (``tests/faults/services.py``): gunicorn serving
the receivers and a Celery worker running beat, both on that Redis as broker (and cache). The
broker is killed with ``kill -9`` (no persistence: every queued message goes with it), the
pushes arrive during the outage, Redis starts again empty on the same port. Every push must be
answered 202 and recorded, and each must get exactly one run that completes: the delivery row
is the outbox, beat's ``webhooks.start_runs`` and the job sweeper re-send what the broker lost.
"""

import contextlib
import hashlib
import hmac
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from apps.pipelines.choices import RUN_TERMINAL, RunStatus
from apps.pipelines.models import Job, PipelineRun
from apps.projects.services import project_create, variable_set
from apps.webhooks.models import WebhookDelivery
from tests.pipelines.worker import database_url, wait_for

from .services import RedisServer, WebServer, Worker, report, stack_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SECRET = "faults-broker-webhook-secret-0123456789"
PUSHES = 200
OUTAGE_SECONDS = 30
# The pushes are spread over this much of the outage, so all of them arrive while it lasts.
SEND_SECONDS = 24
SENDERS = 4
GIT_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/tmp",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
}
# One cheap job: it appends its run number to $MARKS, so a run executed twice shows.
SPEC = """version: 1
jobs:
  mark:
    kind: test
    script:
      - echo "$CONTROLPLANE_RUN_NUMBER" >> "$MARKS"
"""


def _repo(base: Path) -> tuple[str, str]:
    work = base / "repo"
    work.mkdir()
    (work / ".controlplane.yml").write_text(SPEC)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "one job"]):
        subprocess.run(["git", *args], cwd=work, env=GIT_ENV, check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, env=GIT_ENV, capture_output=True, text=True
    ).stdout.strip()
    return f"file://{work}", sha


def _push_body(sha: str, url: str, i: int) -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": sha,
            "repository": {"clone_url": url, "full_name": "faults/broker"},
            "head_commit": {
                "id": sha,
                "message": f"push {i}",
                "url": "",
                "author": {"name": "Ada", "email": "ada@example.com"},
            },
            "pusher": {"name": "ada"},
        }
    ).encode()


def _github_headers(body: bytes, delivery_id: str) -> dict[str, str]:
    """What GitHub sends: its event, its delivery id and the HMAC-SHA256 of the raw body."""
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": "4242",
        "X-Hub-Signature-256": f"sha256={digest}",
        "User-Agent": "GitHub-Hookshot/faults",
    }


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


def test_redis_down_30s_while_200_pushes_arrive(redis_server, tmp_path, capsys):
    url, sha = _repo(tmp_path)
    marks = tmp_path / "marks"
    marks.touch()
    project = project_create(
        name="Broker faults", actor="faults", repository_url=url, webhook_secret=SECRET
    )
    variable_set(project=project, key="MARKS", value=str(marks), actor="faults")
    env = stack_env(
        database_url=database_url(),
        redis_url=redis_server.url(0),
        tmp=tmp_path / "stack",
    )
    web = WebServer(env, workers=2).start()
    worker = Worker(env, concurrency=4, beat=True).start()
    hook = f"{web.url}/hooks/github/{project.slug}/"
    try:
        # The path works before the fault: one push, one run, succeeded.
        body = _push_body(sha, url, 0)
        warm = requests.post(hook, data=body, headers=_github_headers(body, "warm-up"), timeout=10)
        assert warm.status_code == 202, warm.text
        wait_for(lambda: PipelineRun.objects.filter(status=RunStatus.SUCCEEDED).count() == 1, 60)

        redis_server.kill()
        down_at = time.monotonic()
        answers: list[tuple[int, float, str]] = []  # (status, seconds, delivery id)
        readyz: list[int] = []
        lock = threading.Lock()
        ids = [f"faults-{uuid.uuid4()}" for _ in range(PUSHES)]

        def send(mine: list[tuple[int, str]]) -> None:
            with requests.Session() as http:
                for i, delivery_id in mine:
                    # Evenly over SEND_SECONDS: push i is due at i * SEND_SECONDS / PUSHES.
                    time.sleep(max(0.0, down_at + i * SEND_SECONDS / PUSHES - time.monotonic()))
                    payload = _push_body(sha, url, i + 1)
                    started = time.monotonic()
                    try:
                        status = http.post(
                            hook,
                            data=payload,
                            headers=_github_headers(payload, delivery_id),
                            timeout=30,
                        ).status_code
                    except requests.RequestException:
                        status = 0  # no answer at all
                    with lock:
                        answers.append((status, time.monotonic() - started, delivery_id))

        def probe() -> None:
            while time.monotonic() - down_at < OUTAGE_SECONDS - 1:
                with contextlib.suppress(requests.RequestException):
                    readyz.append(requests.get(f"{web.url}/readyz", timeout=10).status_code)
                time.sleep(1)

        work = list(enumerate(ids))
        threads = [threading.Thread(target=send, args=(work[n::SENDERS],)) for n in range(SENDERS)]
        prober = threading.Thread(target=probe)
        for t in [*threads, prober]:
            t.start()
        for t in threads:
            t.join(timeout=OUTAGE_SECONDS + 60)
        sent_in = time.monotonic() - down_at
        prober.join(timeout=OUTAGE_SECONDS)
        # What was done while the broker was away: recorded, waiting for their runs.
        waiting = WebhookDelivery.objects.filter(delivery_id__in=ids, run__isnull=True).count()
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        redis_server.start()
        up_at, up_wall = time.monotonic(), time.time()

        runs_of = WebhookDelivery.objects.filter(delivery_id__in=ids)

        def all_done() -> bool:
            done = PipelineRun.objects.filter(
                pk__in=runs_of.values("run"), status__in=RUN_TERMINAL
            ).count()
            return done == PUSHES

        finished = True
        try:
            wait_for(all_done, 100, interval=0.5)
        except AssertionError:
            finished = False
        recovered_in = time.monotonic() - up_at
        first_start = (
            PipelineRun.objects.filter(pk__in=runs_of.values("run"), started_at__isnull=False)
            .order_by("started_at")
            .values_list("started_at", flat=True)
            .first()
        )

        statuses = [status for status, _, _ in answers]
        latencies = sorted(seconds for _, seconds, _ in answers)
        recorded = runs_of.count()
        with_run = runs_of.filter(run__isnull=False).count()
        run_ids = list(runs_of.exclude(run=None).values_list("run", flat=True))
        completed = PipelineRun.objects.filter(pk__in=run_ids, status=RunStatus.SUCCEEDED)
        executed = [line for line in marks.read_text().split() if line]
        numbers = set(PipelineRun.objects.filter(pk__in=run_ids).values_list("number", flat=True))
        executions = [int(n) for n in executed if int(n) in numbers]
        project_runs = PipelineRun.objects.filter(project=project).count() - 1  # the warm-up
        stuck = PipelineRun.objects.filter(pk__in=run_ids).exclude(status__in=RUN_TERMINAL)
        figures = {
            "injected": f"Redis kill -9, down {up_at - down_at:.0f}s",
            "deliveries expected": PUSHES,
            "answered 202": statuses.count(202),
            "answered other": len(statuses) - statuses.count(202),
            "answer p50/max": f"{latencies[len(latencies) // 2] * 1000:.0f}/"
            f"{latencies[-1] * 1000:.0f} ms",
            "readyz during outage": f"{readyz.count(503)}x503 of {len(readyz)}",
            "recorded": recorded,
            "waiting for the broker": waiting,
            "runs": with_run,
            "completed": completed.count(),
            "jobs run": len(executions),
            "lost": PUSHES - with_run,
            "duplicated": (project_runs - len(set(run_ids)))
            + (len(executions) - len(set(executions))),
            "stuck": stuck.count(),
            "first run started after Redis returned": f"{first_start.timestamp() - up_wall:.1f}s"
            if first_start
            else "never",
            "all complete after Redis returned": f"{recovered_in:.1f}s",
            "pushes sent in": f"{sent_in:.1f}s",
        }
        report(capsys, "broker down", **figures)

        assert statuses.count(202) == PUSHES, sorted(set(statuses))
        assert sent_in < OUTAGE_SECONDS, "every push arrived while Redis was down"
        assert readyz and set(readyz) == {503}, readyz  # it says it is not ready, but answers
        assert recorded == PUSHES
        assert finished, figures
        assert with_run == PUSHES and len(set(run_ids)) == PUSHES
        assert completed.count() == PUSHES, figures
        assert project_runs == PUSHES, "no run beyond one per delivery"
        assert sorted(executions) == sorted(numbers), "each run's job ran exactly once"
        assert Job.objects.filter(run__in=run_ids).exclude(attempt=1).count() == 0
        assert web.alive() and worker.alive(), "nothing was restarted"
    finally:
        worker.stop()
        web.stop()
