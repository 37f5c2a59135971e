"""The job page's live log tail, in a real browser (Playwright driving Debian's chromium):
lines appear on the page less than a second after the job prints them."""

import os
import shutil
import statistics
from pathlib import Path

import pytest

from apps.pipelines import services
from apps.pipelines.models import PipelineRun
from tests.factories import UserFactory
from tests.pipelines.worker import WorkerProcess, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("CONTROLPLANE_SCREENSHOTS", "var/screenshots"))


@pytest.fixture
def browser():
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI needs Debian's chromium (apt-get install chromium)")
        pytest.skip("no /usr/bin/chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls made here are
    # plain synchronous ones (Django's documented switch for this case).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


def test_log_lines_appear_within_a_second(live_server, browser, project):
    user = UserFactory(username="dev-lead", is_superuser=True, is_staff=True)
    worker = WorkerProcess().start()
    try:
        run = services.run_create(
            project=project,
            actor=user,
            jobs=[
                {
                    "name": "ticker",
                    "script": [
                        'for i in $(seq 1 30); do echo "tick $i $EPOCHREALTIME"; sleep 0.2; done'
                    ],
                }
            ],
        )
        job = run.jobs.get()
        wait_for(lambda: type(job).objects.get(pk=job.pk).status == "running", 30)
        page = browser.new_page()
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "dev-lead")
        page.fill("#id_password", "pw-for-tests-123")
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        # Record when each log line shows up in the page, by the browser's clock.
        page.add_init_script("""
            window.__seen = [];
            new MutationObserver(() => {
              const log = document.getElementById('log');
              if (!log) return;
              for (const m of log.innerText.matchAll(/tick (\\d+) ([\\d.]+)/g)) {
                if (!window.__seen.some(s => s.n === m[1])) {
                  const printed = parseFloat(m[2]) * 1000;
                  window.__seen.push({n: m[1], printed: printed, shown: Date.now()});
                }
              }
            }).observe(document, {subtree: true, childList: true, characterData: true});
        """)
        page.goto(f"{live_server.url}{job.get_absolute_url()}")
        page.wait_for_function(
            "() => window.__seen && window.__seen.some(s => s.n === '30')", timeout=60_000
        )
        seen = page.evaluate("window.__seen")
        page.wait_for_selector("#job-summary .s-succeeded", timeout=10_000)
        shown = page.inner_text("#log")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "job-live-tail.png"), full_page=True)
        run = wait_for(lambda: (r := PipelineRun.objects.get(pk=run.pk)).is_terminal and r, 60)
    finally:
        worker.stop()
    # Lines printed before the page opened are shown at once with a large "lag": skip them.
    opened = min(s["shown"] for s in seen)
    lags = [s["shown"] - s["printed"] for s in seen if s["printed"] > opened]
    assert len(lags) >= 15, seen
    # Every line stays on the page, in order, and the status card shows the end.
    positions = [shown.index(f"tick {i} ") for i in range(1, 31)]
    assert positions == sorted(positions)
    assert run.status == "succeeded"
    print(f"live tail lag: median {statistics.median(lags):.0f} ms, max {max(lags):.0f} ms")
    assert statistics.median(lags) < 1000, lags
    assert max(lags) < 1500, lags
