"""PostgreSQL restarted under load (issue 11, "Database restarted").

A PostgreSQL of the test's own (``tests/faults/services.py``), migrated; gunicorn and a Celery
worker running beat on it (and on a Redis of the test's own). Load: a client creating a run
through the API every 0.3 s (each a job of ~1 s), another reading the API, a signed-in page
and ``/readyz``. Then ``pg_ctl stop -m fast`` (every session ended at once), 8 s down, started
again. During the outage every answer is a 503 with Retry-After and a clear message (JSON for
the API, a page for the browser), never a 500; afterwards everything answers again without
restarting anything, and every run the API accepted completes; no job is left claimed by nobody.
"""

import threading
import time
from collections import Counter

import pytest
import requests

from .services import PostgresServer, RedisServer, WebServer, Worker, manage, report, stack_env

pytestmark = [pytest.mark.worker]

DB = "controlplane"
OUTAGE_SECONDS = 8
SETUP = """
from apps.accounts.services import api_token_create
from apps.projects.services import project_create
from django.contrib.auth import get_user_model
User = get_user_model()
user = User.objects.create_superuser("lead", "lead@example.com", "a-long-pass-phrase-42")
project_create(name="Database faults", slug="dbf", actor=user)
print(api_token_create(user=user, name="faults")[1])
"""


@pytest.fixture
def stack(tmp_path):
    pg = PostgresServer().start()
    redis_server = RedisServer().start()
    pg.create_database(DB)
    env = stack_env(
        database_url=pg.url(DB),
        redis_url=redis_server.url(1),
        tmp=tmp_path / "stack",
        extra={
            "CONTROLPLANE_JOB_HEARTBEAT_TIMEOUT": "20",
            "CONTROLPLANE_LOGIN_LOCKOUT": "false",
        },
    )
    manage(env, "migrate", "-v0")
    token = manage(env, "shell", "-c", SETUP).strip().splitlines()[-1]
    try:
        yield pg, env, token
    finally:
        redis_server.stop()
        pg.destroy()


def _classify(response) -> str:
    """ok | 503-clear (503, Retry-After, says the database is unavailable) | other:<status>."""
    if response is None:
        return "no answer"
    if response.status_code < 500:
        return "ok"
    if response.status_code == 503 and response.headers.get("Retry-After"):
        text = response.text.lower()
        if "database" in text and "unavailable" in text:
            return "503-clear"
        if response.headers.get("Content-Type", "").startswith("application/json"):
            body = response.json()
            if body.get("checks", {}).get("database") == "fail":  # /readyz
                return "503-clear"
    if response.status_code == 503 and "/readyz" in response.url:
        return "503-clear" if response.json()["checks"]["database"] == "fail" else "other:503"
    return f"other:{response.status_code}"


def test_postgresql_restarted_under_load(stack, capsys):
    pg, env, token = stack
    web = WebServer(env, workers=2).start()
    worker = Worker(env, concurrency=2, beat=True).start()
    api = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    outage = {"down": None, "up": None}
    seen: list[tuple[float, str, str]] = []  # (when, what, class)
    created: list[int] = []
    stop = threading.Event()
    lock = threading.Lock()

    def record(what: str, response) -> None:
        with lock:
            seen.append((time.monotonic(), what, _classify(response)))

    def creator() -> None:
        with requests.Session() as http:
            while not stop.is_set():
                response = None
                try:
                    response = http.post(
                        f"{web.url}/api/v1/runs/",
                        json={
                            "project": "dbf",
                            "jobs": [{"name": "work", "kind": "test", "script": ["sleep 1"]}],
                        },
                        headers=api,
                        timeout=30,
                    )
                    if response.status_code == 201:
                        with lock:
                            created.append(response.json()["id"])
                except requests.RequestException:
                    pass
                record("POST /api/v1/runs/", response)
                time.sleep(0.3)

    def reader() -> None:
        with requests.Session() as browser, requests.Session() as http:
            browser.get(f"{web.url}/login/", timeout=10)
            browser.post(
                f"{web.url}/login/",
                data={
                    "username": "lead",
                    "password": "a-long-pass-phrase-42",
                    "csrfmiddlewaretoken": browser.cookies["csrftoken"],
                },
                headers={"Referer": f"{web.url}/login/"},
                timeout=10,
            )
            pages = {
                "GET /api/v1/runs/": (http, "/api/v1/runs/?project=dbf", api),
                "GET / (signed in)": (browser, "/", {"Accept": "text/html"}),
                "GET /readyz": (http, "/readyz", {}),
            }
            while not stop.is_set():
                for what, (session, path, headers) in pages.items():
                    response = None
                    try:
                        response = session.get(
                            f"{web.url}{path}", headers=headers, timeout=30, allow_redirects=False
                        )
                    except requests.RequestException:
                        pass
                    record(what, response)
                time.sleep(0.2)

    threads = [threading.Thread(target=creator), threading.Thread(target=reader)]
    try:
        for t in threads:
            t.start()
        time.sleep(6)  # load, runs queued and running
        pg.stop("fast")  # returns once the server is down (pg_ctl waits)
        # Stamped after: a request the server finished before it went down (pg_ctl takes a
        # moment to start, more so on a loaded machine) is not an answer during the outage.
        outage["down"] = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        pg.start()
        outage["up"] = time.monotonic()
        time.sleep(8)  # load again after the restart
        stop.set()
        for t in threads:
            t.join(timeout=60)

        def all_terminal() -> bool:
            rows = pg.query(
                DB,
                "SELECT count(*) FROM pipelines_pipelinerun"
                " WHERE status NOT IN ('succeeded', 'failed', 'canceled')",
            )
            return rows[0][0] == 0

        finished = True
        try:
            wait_for_true(all_terminal, 90)
        except AssertionError:
            finished = False
        runs = dict(pg.query(DB, "SELECT status, count(*) FROM pipelines_pipelinerun GROUP BY 1"))
        jobs = dict(pg.query(DB, "SELECT status, count(*) FROM pipelines_job GROUP BY 1"))
        recorded = pg.query(DB, "SELECT id FROM pipelines_pipelinerun")
        retried = pg.query(DB, "SELECT count(*) FROM pipelines_job WHERE attempt > 1")[0][0]
        claimed_by_nobody = pg.query(
            DB,
            "SELECT count(*) FROM pipelines_job WHERE status = 'running' OR status = 'queued'",
        )[0][0]
        during = [
            (what, cls) for when, what, cls in seen if outage["down"] + 0.5 < when < outage["up"]
        ]
        after = [(what, cls) for when, what, cls in seen if when > outage["up"] + 5]
        classes = Counter(cls for _, _, cls in seen)
        first_ok = min(
            (when for when, what, cls in seen if when > outage["up"] and cls == "ok"),
            default=None,
        )
        report(
            capsys,
            "database restarted",
            injected=f"pg_ctl stop -m fast, down {outage['up'] - outage['down']:.1f}s",
            requests=len(seen),
            answers=dict(classes),
            during_outage=dict(Counter(f"{w} {c}" for w, c in during)),
            first_ok_after_restart=f"{first_ok - outage['up']:.1f}s" if first_ok else "never",
            runs_expected=len(created),
            recorded=len(recorded),
            completed=runs.get("succeeded", 0),
            runs_by_status=runs,
            jobs_by_status=jobs,
            jobs_retried=retried,
            outcomes_recorded_after_waiting=worker.log.read_text(errors="replace").count(
                "the database is unavailable"
            ),
            lost=len(set(created) - {r[0] for r in recorded}),
            duplicated=len(recorded) - len(set(created)),
            stuck=claimed_by_nobody,
            restarted="none" if web.alive() and worker.alive() else "web or worker died",
        )
        assert not [c for c in classes if c.startswith("other") or c == "no answer"], classes
        assert during and all(cls == "503-clear" for _, cls in during), during
        assert {w for w, _ in during} >= {"GET /readyz", "GET /api/v1/runs/", "GET / (signed in)"}
        assert after and all(cls == "ok" for _, cls in after), after
        assert web.alive() and worker.alive(), "nothing was restarted"
        assert finished
        assert {r[0] for r in recorded} == set(created), "every accepted run, no other"
        assert runs.get("succeeded", 0) == len(created), runs
        assert claimed_by_nobody == 0
    finally:
        stop.set()
        worker.stop()
        web.stop()


def wait_for_true(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: S110 - the database may still be starting
            pass
        time.sleep(0.5)
    raise AssertionError(f"not true after {timeout}s")
