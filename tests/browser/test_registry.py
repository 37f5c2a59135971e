"""A team lead opens the model registry in a real browser (Debian's chromium), compares two
versions (the better f1 highlighted, the chart across versions drawn) and opens the lineage of
the version serving in production. Screenshots are kept in var/screenshots/."""

import pytest

from apps.training.models import ModelAlias
from apps.training.services import model_version_register
from tests.training.registry_chain import model_chain

from .test_live_tail import SCREENSHOTS, browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_lead_compares_two_versions_and_opens_the_lineage(
    live_server,
    browser,  # noqa: F811
    project,
    admin_user,
    member,
    tmp_path,
):
    mv, release, _ = model_chain(
        project, admin_user, tmp_path, metrics={"f1": 0.83, "loss": 0.31, "seed": 7}
    )
    better = model_version_register(
        project=project,
        run=None,
        name="churn",
        artifact_digest="sha256:v2",
        metrics={"f1": 0.87, "loss": 0.29},
    )
    ModelAlias.objects.create(  # as the production deployment left it
        project=project,
        model_name="churn",
        environment=project.environments.get(name="production"),
        model_version=mv,
    )
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

    page.goto(f"{live_server.url}{project.get_absolute_url()}")
    page.click("#models-link")
    page.wait_for_selector("#versions")
    assert "production → v1" in page.inner_text("#model-names")
    page.screenshot(path=str(SCREENSHOTS / "registry-1-models.png"), full_page=True)
    page.check(f"input[name=ids][value='{mv.pk}']")
    page.check(f"input[name=ids][value='{better.pk}']")
    page.click("#compare")
    page.wait_for_selector("#comparison")
    best = page.inner_text("#comparison td.best >> nth=0")
    assert "0.87" in best  # f1: higher is better
    assert "seed" not in page.inner_text("#comparison")
    assert page.locator("#across svg polyline").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "registry-2-compare.png"), full_page=True)

    page.click(f"#comparison a[href='{mv.get_absolute_url()}']")
    page.wait_for_selector("#lineage-link")
    page.click("#lineage-link")
    page.wait_for_selector("#lineage")
    text = page.inner_text("#lineage")
    for expected in (
        mv.commit_sha,
        "features v1",
        "eval v1",
        "train",
        release.version,
        "production",
    ):
        assert expected in text, expected
    assert "passed" in page.inner_text("#lineage-gate")
    page.screenshot(path=str(SCREENSHOTS / "registry-3-lineage.png"), full_page=True)
