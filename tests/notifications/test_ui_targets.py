"""The project's notifications page: admins add, edit, disable and delete targets with the
same services (and audit rows) as the API; everyone else only reads, and a write is refused."""

import pytest
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.notifications.models import NotificationTarget
from apps.notifications.services import target_create

pytestmark = pytest.mark.django_db

URL_SECRET = "https://bus.example.com/hooks/T0KEN-in-the-path?key=abc"  # noqa: S105
SECRET = "s3cret-of-twenty-chars"  # noqa: S105 - a test value


def _page(slug):
    return reverse("notifications:project", kwargs={"slug": slug})


def _url(name, project, target=None):
    kwargs = {"slug": project.slug}
    if target is not None:
        kwargs["pk"] = target.pk
    return reverse(f"notifications:{name}", kwargs=kwargs)


@pytest.fixture
def lead(member):
    return member("admin", "lead")


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def hook(project, admin_user):
    return target_create(
        project=project,
        actor=admin_user,
        kind="webhook",
        name="bus",
        destination=URL_SECRET,
        secret=SECRET,
        events=["deployment.failed"],
    )


def _audit(action):
    return list(
        AuditEvent.objects.filter(action=action).values_list("actor__username", "object_id")
    )


def test_a_lead_adds_a_slack_target(as_user, lead, project):
    client = as_user(lead)
    form = client.get(_url("target-add", project))
    assert form.status_code == 200
    assert 'name="destination"' in form.content.decode()
    response = client.post(
        _url("target-add", project),
        {
            "kind": "slack",
            "name": "deploys",
            "destination": "C0DEPLOYS",
            "events": ["promotion.pending", "deployment.failed"],
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == _page(project.slug)
    target = NotificationTarget.objects.get()
    assert (target.project, target.kind, target.name, target.destination) == (
        project,
        "slack",
        "deploys",
        "C0DEPLOYS",
    )
    assert target.events == ["promotion.pending", "deployment.failed"]
    assert target.enabled and target.created_by == lead
    assert _audit("notification_target.created") == [("lead", str(target.pk))]
    page = client.get(_page(project.slug)).content.decode()
    assert "C0DEPLOYS" in page and "Target deploys added." in page


@pytest.mark.parametrize("role", ["viewer", "developer", "approver"])
def test_below_admin_is_refused_and_nothing_changes(as_user, member, project, hook, role):
    client = as_user(member(role, f"{role}-1"))
    audit_before = AuditEvent.objects.count()
    assert client.get(_url("target-add", project)).status_code == 403
    created = client.post(
        _url("target-add", project), {"kind": "slack", "destination": "C0DEPLOYS"}
    )
    assert created.status_code == 403
    edited = client.post(_url("target-edit", project, hook), {"name": "mine", "enabled": "on"})
    assert edited.status_code == 403
    assert client.post(_url("target-enabled", project, hook), {"enabled": "0"}).status_code == 403
    assert client.post(_url("target-delete", project, hook)).status_code == 403
    assert client.post(_url("target-test", project, hook)).status_code == 403
    hook.refresh_from_db()
    assert (hook.name, hook.enabled) == ("bus", True)
    assert NotificationTarget.objects.count() == 1
    assert AuditEvent.objects.count() == audit_before
    # Reading is for every member, without the forms.
    page = client.get(_page(project.slug))
    assert page.status_code == 200
    assert "Add a target" not in page.content.decode()
    assert _url("target-delete", project, hook) not in page.content.decode()


def test_a_non_member_gets_404(as_user, project, hook):
    from tests.factories import UserFactory

    client = as_user(UserFactory(username="stranger"))
    assert client.get(_page(project.slug)).status_code == 404
    assert client.post(_url("target-delete", project, hook)).status_code == 404
    assert NotificationTarget.objects.count() == 1


def test_errors_are_shown_on_the_form_and_nothing_is_saved(as_user, lead, project):
    client = as_user(lead)
    response = client.post(
        _url("target-add", project),
        {"kind": "webhook", "destination": "https://bus.example.com/x", "secret": "short"},
    )
    assert response.status_code == 400
    assert "A webhook target needs a secret of at least 16 characters." in response.content.decode()
    response = client.post(_url("target-add", project), {"kind": "slack", "destination": "deploys"})
    assert "A Slack target needs a channel id" in response.content.decode()
    response = client.post(
        _url("target-add", project), {"kind": "email", "events": ["approval.recorded"]}
    )
    assert "A email target does not take: approval.recorded." in response.content.decode()
    assert NotificationTarget.objects.count() == 0
    assert _audit("notification_target.created") == []


def test_the_list_masks_webhook_urls_and_never_shows_the_secret(as_user, member, project, hook):
    page = as_user(member("viewer")).get(_page(project.slug)).content.decode()
    assert "https://bus.example.com/…" in page
    assert "T0KEN" not in page and "key=abc" not in page
    assert SECRET not in page
    assert "signed" in page


def test_editing_keeps_the_secret_and_url_left_empty(as_user, lead, project, hook):
    client = as_user(lead)
    form = client.get(_url("target-edit", project, hook)).content.decode()
    assert "T0KEN" not in form and SECRET not in form
    response = client.post(
        _url("target-edit", project, hook),
        {"name": "bus-2", "destination": "", "secret": "", "events": ["build.failed"]},
    )
    assert response.status_code == 302
    hook.refresh_from_db()
    assert (hook.name, hook.destination, hook.secret) == ("bus-2", URL_SECRET, SECRET)
    assert hook.events == ["build.failed"]
    assert hook.enabled is False  # the box was not ticked
    [event] = AuditEvent.objects.filter(action="notification_target.updated")
    assert event.actor == lead
    assert SECRET not in str(event.data)


def test_the_kind_cannot_be_changed(as_user, lead, project, hook):
    as_user(lead).post(
        _url("target-edit", project, hook),
        {"kind": "slack", "name": "bus", "enabled": "on", "events": ["deployment.failed"]},
    )
    hook.refresh_from_db()
    assert hook.kind == "webhook"


def test_disable_and_enable_with_htmx(as_user, lead, project, hook):
    client = as_user(lead)
    response = client.post(
        _url("target-enabled", project, hook), {"enabled": "0"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    row = response.content.decode()
    assert row.strip().startswith(f'<tr id="target-{hook.pk}">')
    assert "<strong>no</strong>" in row and ">Enable<" in row
    hook.refresh_from_db()
    assert hook.enabled is False
    # Without JavaScript: a plain POST and a redirect.
    response = client.post(_url("target-enabled", project, hook), {"enabled": "1"})
    assert response.status_code == 302
    hook.refresh_from_db()
    assert hook.enabled is True
    assert len(_audit("notification_target.updated")) == 2


def test_delete(as_user, lead, project, hook):
    client = as_user(lead)
    response = client.post(_url("target-delete", project, hook), headers={"HX-Request": "true"})
    assert (response.status_code, response.content) == (200, b"")
    assert NotificationTarget.objects.count() == 0
    assert _audit("notification_target.deleted") == [("lead", str(hook.pk))]


def test_only_post_changes(as_user, lead, project, hook):
    client = as_user(lead)
    assert client.get(_url("target-delete", project, hook)).status_code == 405
    assert client.get(_url("target-enabled", project, hook)).status_code == 405
    assert NotificationTarget.objects.count() == 1
