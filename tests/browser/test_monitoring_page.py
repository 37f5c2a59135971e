"""A team lead opens production's monitoring page in a real browser (Debian's chromium): from
the environment page, sees the drift charts drawn by the vendored uPlot (canvases with
pixels on them, every file served by the control plane itself) and the latest check's
feature table, silences the drift alert from its row and follows the alerts link.
Screenshots are kept in var/screenshots/."""

import pytest

from apps.monitoring.models import Silence
from apps.pipelines.choices import Trigger
from apps.releases.services import promotion_request, release_create
from tests.factories import RunFactory
from tests.monitoring.factories import AlertFactory, RetrainRequestFactory, drift_history

from .test_live_tail import SCREENSHOTS, browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# How many pixels of a chart's canvas are of a series' colour (monitoring.js's palette): the
# axes and grid are grey, so only a drawn line or bar counts. "blue": the score line
# (#2f5bd3), "red": the current histogram's bars and the drift share (#d3492f).
PAINTED = """([el, colour]) => {
  const canvas = el.querySelector("canvas");
  if (!canvas) return -1;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (a === 0) continue;
    if (colour === "blue" ? b > 150 && r < 110 && g < 140 : r > 150 && g < 120 && b < 100) n++;
  }
  return n;
}"""


def painted(locator, colour: str) -> int:
    return locator.evaluate(f"(el) => ({PAINTED})([el, {colour!r}])")


def test_a_lead_sees_production_drift_charts_and_table(
    live_server,
    browser,  # noqa: F811
    project,
    member,
):
    production = project.environments.get(name="production")
    drift_history(production, checks=12, drift_from=9)
    alert = AlertFactory(
        environment=production, rule="dataset_drift", summary="Drift in tenure, plan"
    )
    lead = member("approver", "team-lead")
    lead.set_password("pw-for-tests-123")
    lead.save()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # A script or style the Content-Security-Policy refused, or a file not found, shows as a
    # console error (the browser's own favicon.ico request aside: there is none).
    page.on(
        "console",
        lambda m: (
            m.type == "error"
            and not m.location.get("url", "").endswith("/favicon.ico")
            and errors.append(f"{m.text} {m.location.get('url', '')}")
        ),
    )
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "team-lead")
    page.fill("#id_password", "pw-for-tests-123")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")

    page.goto(f"{live_server.url}{production.get_absolute_url()}")
    assert "1 alert firing" in page.inner_text("#monitoring-card")
    page.click("#monitoring-link")
    page.wait_for_url("**/environments/production/monitoring/")

    # Every chart drawn: the share, performance, one score line and one histogram per feature.
    page.wait_for_selector("[data-chart][data-drawn=true]")
    charts = page.locator("[data-chart]")
    assert charts.count() == 2 + 2 * 3
    for i in range(charts.count()):
        chart = charts.nth(i)
        assert chart.get_attribute("data-drawn") == "true", chart.get_attribute("data-chart")
    tenure = page.locator("[data-chart=feature][data-feature=tenure]")
    assert painted(tenure, "blue") > 200
    histogram = page.locator("[data-chart=histogram][data-feature=plan]")
    assert painted(histogram, "red") > 1000
    assert painted(page.locator("[data-chart=share]"), "red") > 200
    # The legends uPlot writes name the series.
    assert "ks score" in tenure.inner_text() and "threshold" in tenure.inner_text()
    assert "reference" in histogram.inner_text() and "current" in histogram.inner_text()
    assert not errors, errors

    # The table of the latest check.
    row = page.locator("#features tr[data-feature=tenure]").inner_text().split()
    assert row[:3] == ["tenure", "Numeric", "ks"] and "drift" in row
    assert "drift" in page.locator("#features tr[data-feature=plan]").inner_text()
    assert "ok" in page.locator("#features tr[data-feature=monthly_charges]").inner_text()
    assert "dataset drift" in page.inner_text("#latest")
    page.screenshot(path=str(SCREENSHOTS / "monitoring-1-production.png"), full_page=True)
    page.locator("#feature-tenure").screenshot(path=str(SCREENSHOTS / "monitoring-2-tenure.png"))

    # Nothing came from anywhere but the control plane (no CDN).
    assert requested and all(u.startswith(live_server.url) for u in requested), requested

    # The alerts: the firing one is listed, with its silence form one click away.
    assert "Drift in tenure, plan" in page.inner_text("#alerts")
    page.click(f"#alert-{alert.pk} >> text=Silence…")
    page.wait_for_selector("#silence-form")
    matchers = page.input_value("#id_matchers")
    assert "dataset_drift" in matchers and "production" in matchers, matchers
    page.fill("#id_reason", "Known shift: the spring campaign moves plans; retrain under way")
    page.screenshot(path=str(SCREENSHOTS / "monitoring-3-silence.png"), full_page=True)
    page.click("#silence-form button[type=submit]")
    page.wait_for_url("**/silences/")
    assert "spring campaign" in page.inner_text("body")
    page.screenshot(path=str(SCREENSHOTS / "monitoring-4-silences.png"), full_page=True)
    silence = Silence.objects.get(project=project)
    assert silence.created_by == lead and silence.is_active()
    assert {"name": "environment", "op": "=", "value": "production"} in silence.matchers

    # Back on the monitoring page the alert shows silenced, with no second Silence… button;
    # the alerts link leads to production's alerts.
    page.goto(f"{live_server.url}{production.get_absolute_url()}monitoring/")
    row = page.inner_text(f"#alert-{alert.pk}")
    assert "silenced until" in row and "Silence…" not in row
    page.click("#alerts-link")
    page.wait_for_load_state()
    assert "Drift in tenure, plan" in page.inner_text("#alerts")


def test_a_lead_reads_the_drift_behind_a_retrained_release_on_its_promotion(
    live_server,
    browser,  # noqa: F811
    project,
    admin_user,
    member,
):
    production = project.environments.get(name="production")
    checks = drift_history(production, checks=4, drift_from=2)
    run = RunFactory(project=project, trigger=Trigger.MONITOR, trigger_detail="drift: tenure, plan")
    RetrainRequestFactory(drift_check=checks[2], run=run)
    release = release_create(
        project=project,
        version="r12-retrain",
        commit_sha="abc1234",
        actor=admin_user,
        pipeline_run=run,
    )
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    lead = member("approver", "team-lead")
    lead.set_password("pw-for-tests-123")
    lead.save()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "team-lead")
    page.fill("#id_password", "pw-for-tests-123")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")

    page.goto(f"{live_server.url}{promotion.get_absolute_url()}")
    section = page.locator("section[aria-labelledby=drift-title]")
    assert "This release comes from a drift retrain" in section.inner_text()
    cause = page.locator("#drift-cause").inner_text()
    assert "tenure" in cause and "0.001" in cause and "psi" in cause
    section.screenshot(path=str(SCREENSHOTS / "monitoring-5-promotion-drift.png"))
    page.click("#drift-latest a")
    page.wait_for_url("**/environments/production/monitoring/")
    page.wait_for_selector("[data-chart=share][data-drawn=true]")
