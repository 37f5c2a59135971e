"""The list filters (build history, webhook deliveries) are tidy inline forms: a label for
every field, selects whose empty choice reads "Any", date pickers, the current values kept,
a submit button and a reset link back to the unfiltered list."""

import re

import pytest

from apps.pipelines.choices import RunStatus
from apps.webhooks.models import WebhookDelivery
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def _form(html: str) -> str:
    m = re.search(r'<form class="filters" method="get".*?</form>', html, re.S)
    assert m, html
    return m.group(0)


def _labels(form: str) -> dict[str, str]:
    """input/select id → its label's text; every field has one."""
    labels = dict(re.findall(r'<label for="([^"]+)">([^<]+)</label>', form))
    ids = re.findall(r'<(?:input|select)[^>]* id="([^"]+)"', form)
    assert ids and set(ids) == set(labels), (ids, labels)
    return labels


def test_build_history_filters(client, admin_user, project):
    RunFactory(project=project, status=RunStatus.FAILED, ref="main")
    RunFactory(project=project, status=RunStatus.SUCCEEDED, ref="main")
    client.force_login(admin_user)
    page = client.get("/runs/", {"status": "failed", "branch": "main"}).content.decode()
    form = _form(page)
    assert list(_labels(form).values()) == [
        "Project",
        "Status",
        "Trigger",
        "Branch or tag",
        "Commit",
        "Author",
        "From",
        "Until",
    ]
    assert "{{" not in form and "---------" not in form
    assert '<option value="">Any</option>' in form
    assert '<option value="failed" selected>Failed</option>' in form
    assert re.search(r'<input type="text" name="branch" id="id_branch" value="main"', form)
    assert form.count('type="datetime-local"') == 2
    assert '<button class="btn" type="submit">Filter</button>' in form
    assert '<a class="reset" href="/runs/">Reset</a>' in form
    # The filter applies: only the failed run is listed.
    assert page.count('class="badge s-failed"') == 1
    assert 'class="badge s-succeeded"' not in page


def test_build_history_accepts_the_date_pickers_values(client, admin_user, project):
    RunFactory(project=project)
    client.force_login(admin_user)
    page = client.get("/runs/", {"created_after": "2000-01-01T10:00"}).content.decode()
    assert page.count("churn-model #") == 1
    assert 'value="2000-01-01T10:00"' in page
    page = client.get("/runs/", {"created_before": "2000-01-01T10:00"}).content.decode()
    assert "No runs." in page


def test_webhook_delivery_filters(client, admin_user, project):
    WebhookDelivery.objects.create(
        provider="github",
        project=project,
        delivery_id="d-1",
        event="push",
        status="ignored",
        http_status=202,
    )
    client.force_login(admin_user)
    page = client.get("/webhooks/", {"provider": "github"}).content.decode()
    form = _form(page)
    labels = _labels(form)
    assert labels["id_project"] == "Project"
    assert labels["id_received_after"] == "Received from"
    assert "greater than" not in form and "---------" not in form
    assert '<option value="github" selected>' in form
    assert '<a class="reset" href="/webhooks/">Reset</a>' in form
    # On a project's page the project field is not offered.
    page = client.get(f"/p/{project.slug}/webhooks/").content.decode()
    form = _form(page)
    assert 'id="id_project"' not in form
    assert f'<a class="reset" href="/p/{project.slug}/webhooks/">Reset</a>' in form
