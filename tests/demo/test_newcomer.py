"""Done when a newcomer can do what the README says: set the demo up, ``git clone`` its
repository, change something, ``git push`` — and watch the run start by itself (the repository's
hook delivers a signed push to the control plane), show up in the build history in a real
browser and succeed, its reproducibility check naming the model digest the release carries.

Real everything: the setup_demo command on the test database, git, the post-receive hook, the
live test server, a Celery worker running the example's pipeline, Debian's chromium."""

import pytest

from apps.pipelines.choices import RunStatus
from apps.pipelines.models import PipelineRun
from apps.pipelines.services import run_cancel
from apps.releases.models import Promotion, Release
from tests.browser.test_live_tail import SCREENSHOTS, browser  # noqa: F401 - the fixture
from tests.pipelines.test_worker import finished, log_of
from tests.pipelines.worker import WorkerProcess, wait_for

from .conftest import change_and_push

pytestmark = [pytest.mark.worker, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

#: The example's pipeline installs scikit-learn into a fresh virtualenv (cached between its
#: jobs): a minute or two on an idle machine, far more on a loaded one.
PIPELINE_SECONDS = 900


def test_clone_change_push_and_watch_the_run_succeed(
    setup_demo,
    settings,
    live_server,
    browser,  # noqa: F811
    tmp_path,
):
    settings.SITE_URL = live_server.url  # what the hook posts to
    demo = setup_demo()
    project = demo.project
    # setup_demo's own first run is `make demo`'s (scripts/smoke_demo.py waits for it): cancel
    # it so the worker runs only the pushed one. And deploy nothing: the demo's fixed service
    # ports (8101-8103) may be taken on a shared machine; its release then waits for a
    # promotion instead, whose page shows the evidence.
    run_cancel(run=project.runs.get(), actor="test", reason="Not this one.")
    project.environments.update(auto_deploy=False)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    worker = WorkerProcess(concurrency=2).start()
    try:
        sha, printed = change_and_push(demo.clone(tmp_path / "churn-model"))
        assert "remote: control plane: push delivered (202)" in printed, printed
        run = wait_for(
            lambda: PipelineRun.objects.filter(project=project, commit_sha=sha).first(), 60
        )
        assert run.commit_author == "New Comer"

        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "dev")
        page.fill("#id_password", demo.logins["dev"])  # as setup_demo printed it
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        page.goto(f"{live_server.url}/runs/")
        row = page.locator("tr", has=page.locator(f"a[href='{run.get_absolute_url()}']"))
        assert sha[:10] in row.inner_text() and "Say hello in the README" in row.inner_text()
        page.screenshot(path=str(SCREENSHOTS / "newcomer-1-pushed.png"), full_page=True)

        run = finished(run, timeout=PIPELINE_SECONDS)
        jobs = {j.name: j for j in run.jobs.all()}
        assert run.status == RunStatus.SUCCEEDED, {
            n: (j.status, j.error_message, log_of(run, n)[-2000:]) for n, j in jobs.items()
        }
        page.reload()
        assert "succeeded" in row.inner_text()
        page.screenshot(path=str(SCREENSHOTS / "newcomer-2-succeeded.png"), full_page=True)

        # The check tested the model that ships: the build's, by digest.
        release = wait_for(lambda: Release.objects.filter(pipeline_run=run).first(), 60)
        shipped = release.evidence["model"]["digest"]
        assert shipped == jobs["build"].result["model"]["digest"]
        assert release.model_version.artifact_digest == shipped
        checked = release.evidence["reproducibility"]
        assert checked["reproduce"]["passed"] and checked["reproduce"]["rows_outside"] == 0
        assert checked["reproduce"]["model"]["digest"] == shipped
        assert f"model artifacts/model.joblib from 'build': {shipped}" in log_of(run, "reproduce")
        # No image was built: the in-image check says it was skipped, and why.
        assert checked["reproduce-image"]["status"] == "skipped"

        promotion = wait_for(lambda: Promotion.objects.filter(release=release).first(), 60)
        page.goto(f"{live_server.url}{promotion.get_absolute_url()}")
        table = page.locator("section[aria-labelledby=repro-title] table")
        checked_row = table.locator("tr", has_text="reproduce").first.inner_text()
        assert "succeeded" in checked_row and f"model {shipped[:20]}" in checked_row
        skipped_row = table.locator("tr", has_text="reproduce-image").inner_text()
        assert "skipped" in skipped_row and "made no image" in skipped_row
        assert "succeeded" not in skipped_row and "—" not in skipped_row
        page.screenshot(path=str(SCREENSHOTS / "newcomer-3-evidence.png"), full_page=True)
    finally:
        worker.stop()
