#!/usr/bin/env python3
"""Check the README's first command end to end, as a newcomer would see it.

Starts ``make demo`` (fresh var/ folder), waits for the login page, logs in with the printed
credentials, checks the dashboard lists the demo project and that the worker ran the demo
pipeline, deploys it; the admin (who started the run) is refused the approval, the lead
approves it; then clones the demo repository, pushes a change and checks the push started a
run (the repository's hook), then presses Ctrl-C and checks everything stopped. Exit code 0 =
all good.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from urllib.parse import urlencode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = "http://127.0.0.1:8000"
LIMIT = float(os.environ.get("SMOKE_LIMIT_SECONDS", "180"))  # fresh clone → login page


def main() -> int:
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CI")}
    env["CONTROLPLANE_VAR_DIR"] = os.path.join(ROOT, "var", "smoke")
    if "--production-stack" in sys.argv:
        # The same command on PostgreSQL and Redis: a fresh database, a Redis db of its own.
        db = "controlplane_smoke"
        for sql in (f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}"):
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db}"
        env["REDIS_URL"] = "redis://127.0.0.1:6379/14"
        subprocess.run(["redis-cli", "-n", "14", "flushdb"], check=True, capture_output=True)
    print(f"stack: {env.get('DATABASE_URL', 'sqlite')} / {env.get('REDIS_URL', 'filesystem')}")
    subprocess.run(["rm", "-rf", env["CONTROLPLANE_VAR_DIR"]], check=True)
    proc = subprocess.Popen(
        ["make", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    password = repository = None
    try:
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        while time.monotonic() - started < LIMIT:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise SystemExit("make demo exited early:\n" + "".join(output[-40:]))
            output.append(line)
            match = re.search(r"Log in as:\s+admin / (\S+)", line)
            if match:
                password = match.group(1)
            match = re.search(r"git clone (\S+) churn-model", line)
            if match:
                repository = match.group(1)
            if password and "Starting development server" in line:
                break
        _wait_http(opener, f"{BASE}/login/", started)
        print(f"login page up after {time.monotonic() - started:.1f}s", flush=True)
        _drain(proc, output)
        dashboard = _login(opener, "admin", password)
        assert "Demo churn model" in dashboard, "dashboard does not show the demo project"
        print("logged in; dashboard shows the demo project", flush=True)
        # The demo pushed examples/churn-model: its pipeline (tests, bundle, reproducibility,
        # each job in its own virtualenv) must succeed on the worker.
        deadline = time.monotonic() + float(os.environ.get("SMOKE_PIPELINE_SECONDS", "300"))
        while True:
            body = opener.open(f"{BASE}/api/v1/runs/?project=demo-churn-model").read().decode()
            run = json.loads(body)["results"][0]
            if run["status"] == "succeeded":
                break
            if run["status"] in ("failed", "canceled"):
                jobs = [(j["name"], j["status"], j["error_message"]) for j in run["jobs"]]
                raise SystemExit(
                    f"the demo pipeline {run['status']}: {run['error_message']} {jobs}"
                )
            if time.monotonic() > deadline:
                raise SystemExit(f"the demo pipeline did not finish in time: {body[:800]}")
            time.sleep(1)
        print(
            f"the demo pipeline succeeded on the worker; total {time.monotonic() - started:.1f}s",
            flush=True,
        )
        printed = "".join(output)
        logins = {}
        for user in ("lead", "dev", "viewer"):  # every role's login is printed
            match = re.search(rf"^\s+{user} / (\S+)\s+\(", printed, re.M)
            assert match, f"no login for {user}"
            logins[user] = match.group(1)
        lead = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        _login(lead, "lead", logins["lead"])
        _cd_flow(opener, lead, started)
        _push_flow(opener, repository, started)
    except BaseException:
        _drain(proc, output)
        print("".join(output[-60:]), file=sys.stderr)
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
            try:
                proc.wait(timeout=30)
                print("Ctrl-C stopped web, worker and beat", flush=True)
                left = [port for port in (8101, 8102, 8103) if _health(port)]
                if left:
                    raise SystemExit(f"deployed services still answer after Ctrl-C: {left}")
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                raise SystemExit("the demo did not stop on Ctrl-C within 30 s") from None
    return 0


def _health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _until(what: str, check, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise SystemExit(f"timed out waiting for {what}")


def _login(opener, username: str, password: str) -> str:
    """Log ``opener`` in through the login form; returns the page it lands on."""
    page = opener.open(f"{BASE}/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/"}
    ).encode()
    request = urllib.request.Request(
        f"{BASE}/login/", data=data, headers={"Referer": f"{BASE}/login/"}
    )
    return opener.open(request).read().decode()


def _decide(opener, page_url: str) -> None:
    page = opener.open(page_url).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urlencode(
        {"decision": "approve", "comment": "smoke test", "csrfmiddlewaretoken": token}
    ).encode()
    opener.open(
        urllib.request.Request(f"{page_url}decide/", data=data, headers={"Referer": page_url})
    )


def _cd_flow(admin, lead, started: float) -> None:
    """The CD loop on the embedded stack: the release deploys itself to dev and staging with
    the process deployer and waits for an approval to production. The admin started the run,
    so four eyes refuse its approval; the lead approves it in the browser, and production
    answers its health check."""
    opener = admin
    api = f"{BASE}/api/v1"
    seconds = float(os.environ.get("SMOKE_DEPLOY_SECONDS", "300"))

    def deployments_failed() -> None:
        body = json.loads(opener.open(f"{api}/deployments/?status=failed").read())
        if body["count"]:
            raise SystemExit(f"a deployment failed: {json.dumps(body['results'])[:3000]}")

    for name, port in (("dev", 8101), ("staging", 8102)):

        def up(port=port):
            deployments_failed()
            return _health(port)

        _until(f"{name} to answer on {port}", up, seconds)
        print(f"{name} serves the release on port {port}", flush=True)

    def pending():
        body = json.loads(opener.open(f"{api}/promotions/?status=pending").read())
        return body["results"][0] if body["count"] else None

    promotion = _until("the promotion to production", pending, 60)
    page_url = f"{BASE}/p/demo-churn-model/promotions/{promotion['id']}/"
    try:
        _decide(admin, page_url)
    except urllib.error.HTTPError as exc:
        assert exc.code == 403, f"the admin's own approval answered {exc.code}, not 403"
        assert "someone else must approve" in exc.read().decode(), "403 without the reason"
    else:
        raise SystemExit("the admin approved the promotion of a run the admin started")
    print("four eyes: the run's trigger may not approve it (403 with the reason)", flush=True)
    _decide(lead, page_url)
    approved = time.monotonic()
    _until("production to answer on 8103", lambda: _health(8103), seconds)
    print(
        f"approved in the browser; production answers on 8103 after "
        f"{time.monotonic() - approved:.1f}s; total {time.monotonic() - started:.1f}s",
        flush=True,
    )


def _push_flow(opener, repository: str | None, started: float) -> None:
    """What the README tells a newcomer: clone the demo repository, change something, push;
    the repository's hook tells the control plane, which starts a run for the commit."""
    import tempfile

    assert repository, "setup_demo printed no `git clone` line"
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Smoke Test",
        "GIT_AUTHOR_EMAIL": "smoke@example.com",
        "GIT_COMMITTER_NAME": "Smoke Test",
        "GIT_COMMITTER_EMAIL": "smoke@example.com",
    }
    with tempfile.TemporaryDirectory(prefix="smoke-clone-") as tmp:
        work = os.path.join(tmp, "churn-model")

        def git(*args: str, cwd: str = work) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
            )

        git("clone", "-q", repository, work, cwd=tmp)
        branch = git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
        assert branch == "main", f"the clone checked out {branch!r}, not main"
        with open(os.path.join(work, "README.md"), "a") as fh:
            fh.write("\nChanged by the smoke test.\n")
        git("commit", "-qam", "Smoke test: a pushed change")
        pushed = git("push", "origin", "main").stderr
        sha = git("rev-parse", "HEAD").stdout.strip()
    assert "push delivered (202)" in pushed, f"the hook did not deliver the push:\n{pushed}"

    def run_for_push():
        body = json.loads(opener.open(f"{BASE}/api/v1/runs/?project=demo-churn-model").read())
        return next((r for r in body["results"] if r["commit_sha"] == sha), None)

    run = _until("a run of the pushed commit", run_for_push, 60)
    print(
        f"git push started run #{run['number']} through the hook; total "
        f"{time.monotonic() - started:.1f}s",
        flush=True,
    )
    # Cancel it, or Ctrl-C would wait for its jobs: a worker stops once its running tasks end.
    jar = next(h.cookiejar for h in opener.handlers if hasattr(h, "cookiejar"))
    token = next(c.value for c in jar if c.name == "csrftoken")
    request = urllib.request.Request(
        f"{BASE}/api/v1/runs/{run['id']}/cancel/",
        data=b"",
        method="POST",
        headers={"X-CSRFToken": token, "Referer": f"{BASE}/"},
    )
    try:
        opener.open(request)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:  # 409: it has finished already
            raise
    _until(
        "the pushed run's jobs to stop",
        lambda: all(j["status"] != "running" for j in run_for_push()["jobs"]),
        60,
    )


def _wait_http(opener, url: str, started: float) -> None:
    while time.monotonic() - started < LIMIT:
        try:
            if opener.open(url, timeout=2).status == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {LIMIT:.0f}s")


def _drain(proc, output) -> None:
    os.set_blocking(proc.stdout.fileno(), False)
    try:
        chunk = proc.stdout.read()
        if chunk:
            output.append(chunk)
    except (BlockingIOError, TypeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
