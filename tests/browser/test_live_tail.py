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


def _login(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-for-tests-123")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def test_log_lines_appear_within_a_second(live_server, browser, project):
    user = UserFactory(username="dev-lead", is_superuser=True, is_staff=True)
    # Logged in before the job starts: on a busy machine logging in can take longer than
    # the job, and lines printed before the page opened say nothing about the tail.
    page = browser.new_page()
    _login(page, live_server, "dev-lead")
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


def test_a_colour_spanning_two_polls_stays_on(live_server, browser, project):
    """The job turns red, prints a line, and goes on printing in red in a later poll: the
    later lines are red on the page too, as in the whole log."""
    UserFactory(username="dev-lead", is_superuser=True, is_staff=True)
    page = browser.new_page()
    _login(page, live_server, "dev-lead")
    page.add_init_script("""
        window.__first = {};
        new MutationObserver(() => {
          const log = document.getElementById('log');
          // The lines as printed (the runner's "$ command" line quotes them otherwise).
          for (const t of ['red starts\\n', 'still red ü 😀']) {
            if (log && !(t in window.__first) && log.textContent.includes(t))
              window.__first[t] = Date.now();
          }
        }).observe(document, {subtree: true, childList: true, characterData: true});
    """)
    worker = WorkerProcess().start()
    try:
        run = services.run_create(
            project=project,
            actor="t",
            jobs=[
                {
                    "name": "colours",
                    # One command: the runner's own "$ command" line would reset the style.
                    "script": [
                        "sleep 1.5; printf '\\033[31mred starts\\n'; sleep 1; "
                        "printf 'still red ü'; sleep 0.5; printf ' 😀\\n\\033[0mplain again\\n'"
                    ],
                }
            ],
        )
        job = run.jobs.get()
        page.goto(f"{live_server.url}{job.get_absolute_url()}")
        page.wait_for_selector("#job-summary .s-succeeded", timeout=30_000)
        first = page.evaluate("window.__first")
        colours = page.evaluate("""() => ['red starts', 'still red', 'plain again'].map(t => {
            const span = [...document.querySelectorAll('#log span')]
                .find(s => s.textContent.startsWith(t));
            return span ? getComputedStyle(span).color : null;
        })""")
        shown = page.inner_text("#log")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "job-colours-across-polls.png"), full_page=True)
    finally:
        worker.stop()
    # The two red lines came in different polls (the page was open before the job ran).
    assert first["still red ü 😀"] - first["red starts\n"] > 500, first
    red = "rgb(205, 49, 49)"  # ansi-fg-1
    assert colours[:2] == [red, red], colours
    assert colours[2] is None  # plain text is in no span
    assert "still red ü 😀\nplain again" in shown


def test_list_filters_are_inline_forms(live_server, browser, project):
    """Build history and webhook deliveries: labelled fields in one wrapping row, Filter and
    Reset; filtering and resetting work from the page."""
    from apps.pipelines.choices import RunStatus
    from tests.factories import RunFactory

    UserFactory(username="dev-lead", is_superuser=True, is_staff=True)
    RunFactory(project=project, status=RunStatus.FAILED)
    RunFactory(project=project, status=RunStatus.SUCCEEDED)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    _login(page, live_server, "dev-lead")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for url, name in (("/runs/", "build-history"), ("/webhooks/", "webhook-deliveries")):
        page.goto(f"{live_server.url}{url}")
        form = page.locator("form.filters")
        box = form.bounding_box()
        assert box["height"] < 160, box  # two rows at most at this width, not a column
        for field in form.locator(".filter-field").all():
            label, control = (
                field.locator("label").bounding_box(),
                field.locator("input, select").bounding_box(),
            )
            assert label["y"] + label["height"] <= control["y"] + 1  # the label sits above
            assert abs(label["x"] - control["x"]) < 2
        assert form.locator("button[type=submit]").is_visible()
        assert form.locator("a.reset").is_visible()
        page.screenshot(path=str(SCREENSHOTS / f"filters-{name}.png"))
    page.goto(f"{live_server.url}/runs/")
    page.select_option("#id_status", "failed")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/runs/?*status=failed*")
    assert page.locator("table .s-failed").count() == 1
    assert page.locator("table .s-succeeded").count() == 0
    page.screenshot(path=str(SCREENSHOTS / "filters-build-history-failed.png"))
    page.click("form.filters a.reset")
    page.wait_for_url(f"{live_server.url}/runs/")
    assert page.locator("table .badge").count() == 2
    assert page.input_value("#id_status") == ""
