"""A team lead approves a production deploy in a real browser (Playwright driving Debian's
chromium): logs in, opens the approvals inbox, reads the evidence on the promotion page,
approves with a comment, and sees production updated once the worker has deployed it (process
deployer, real worker). Screenshots are kept in var/screenshots/."""

import json
import urllib.request

import pytest

from apps.releases.deployers.health import free_port
from apps.releases.deployers.process import ProcessDeployer
from apps.releases.services import promotion_request
from tests.factories import UserFactory
from tests.pipelines.worker import WorkerProcess
from tests.releases.test_deploy_rules import make_release

from .test_live_tail import SCREENSHOTS, browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.worker, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def answer(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def test_approver_approves_from_the_inbox_and_sees_production_updated(
    live_server,
    browser,  # noqa: F811
    project,
    admin_user,
    member,
    tmp_path,
):
    production = project.environments.get(name="production")
    production.deployer = "process"
    production.service_port = free_port()
    production.service_url = f"http://127.0.0.1:{production.service_port}/"
    production.health_check_timeout = 30
    production.save()
    release = make_release(project, admin_user, tmp_path, "r7-feedc0de")
    release.evidence = {
        "tests": {"test": {"tests": 22, "passed": 22, "failures": 0, "errors": 0, "skipped": 0}},
        "reproducibility": {"reproduce": {"passed": True, "max_abs_diff": 0.0, "rows_outside": 0}},
        "model": {"name": "churn", "metrics": {"accuracy": 0.8995, "f1": 0.8305}},
    }
    release.save(update_fields=["evidence"])
    promotion = promotion_request(release=release, environment=production, actor="pipeline")
    lead = member("approver", "team-lead")
    lead.set_password("pw-for-tests-123")
    lead.save()
    UserFactory(username="bystander")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    worker = WorkerProcess().start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "team-lead")
        page.fill("#id_password", "pw-for-tests-123")
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")

        page.goto(f"{live_server.url}/approvals/")
        row = page.get_by_text("r7-feedc0de").first
        row.wait_for()
        page.screenshot(path=str(SCREENSHOTS / "approver-1-inbox.png"), full_page=True)
        page.click(f"a[href='{promotion.get_absolute_url()}']")
        page.wait_for_url(f"**{promotion.get_absolute_url()}")
        body = page.inner_text("body")
        # The evidence: tests, reproducibility, model metrics, who built it.
        assert "22" in body and "0.8995" in body
        assert "r7-feedc0de" in body
        page.screenshot(path=str(SCREENSHOTS / "approver-2-evidence.png"), full_page=True)

        page.fill("textarea[name=comment]", "Evidence reviewed: ship it")
        page.click("button[value=approve]")
        page.wait_for_load_state()
        # The worker deploys it; production answers, and the pages say so.
        for _ in range(120):
            if answer(production.service_port):
                break
            page.wait_for_timeout(250)
        assert answer(production.service_port)["release"] == "r7-feedc0de"
        page.goto(f"{live_server.url}{production.get_absolute_url()}")
        page.get_by_text("r7-feedc0de").first.wait_for()
        for _ in range(40):
            text = page.inner_text("body").lower()
            if "succeeded" in text:
                break
            page.wait_for_timeout(250)
            page.reload()
        assert "succeeded" in page.inner_text("body").lower()
        page.screenshot(path=str(SCREENSHOTS / "approver-3-production.png"), full_page=True)
        page.goto(f"{live_server.url}/")
        dashboard = page.inner_text("body")
        assert "r7-feedc0de" in dashboard
        page.screenshot(path=str(SCREENSHOTS / "approver-4-dashboard.png"), full_page=True)
        promotion.refresh_from_db()
        assert promotion.status == "deployed"
        assert promotion.approvals.get().comment == "Evidence reviewed: ship it"
    finally:
        worker.stop()
        ProcessDeployer().stop(project=project.slug, environment="production")
