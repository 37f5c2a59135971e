"""Freeze windows on the environment page: the project's admins add (cron + duration + reason,
checked by the same service as the API) and remove them, audited; everyone else sees them but
gets no buttons, and their POSTs are refused and change nothing."""

from datetime import timedelta

import pytest
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.projects.models import FreezeWindow
from apps.projects.services import freeze_window_add

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(project):
    return project.environments.get(name="production")


def _add_url(environment):
    return reverse("releases:freeze-add", args=[environment.project.slug, environment.name])


def _remove_url(window):
    env = window.environment
    return reverse("releases:freeze-remove", args=[env.project.slug, env.name, window.pk])


def test_an_admin_adds_a_freeze_window_and_deploys_are_held(client, production, admin_user):
    client.force_login(admin_user)
    page = client.get(production.get_absolute_url()).content.decode()
    assert "Add a freeze window" in page and 'name="cron"' in page
    response = client.post(
        _add_url(production), {"cron": "0 17 * * 5", "duration": "2 15:00:00", "reason": "weekend"}
    )
    assert response.status_code == 302
    window = production.freeze_windows.get()
    assert (window.cron, window.duration, window.reason) == (
        "0 17 * * 5",
        timedelta(days=2, hours=15),
        "weekend",
    )
    event = AuditEvent.objects.get(action="freeze_window.added")
    assert event.actor == admin_user and event.data["reason"] == "weekend"
    page = client.get(response["Location"]).content.decode()
    assert "0 17 * * 5" in page and "weekend" in page
    assert _remove_url(window) in page


def test_the_forms_errors_are_the_services_and_nothing_is_added(client, production, admin_user):
    client.force_login(admin_user)
    bad = {"cron": "every friday", "duration": "1:00:00", "reason": "x"}
    response = client.post(_add_url(production), bad)
    assert response.status_code == 400
    page = response.content.decode()
    assert "&#x27;every friday&#x27; is not a valid cron expression." in page
    assert 'value="every friday"' in page  # what was typed stays in the form
    response = client.post(_add_url(production), {**bad, "cron": "* * * * *", "duration": "0"})
    assert response.status_code == 400
    assert "The duration must be positive." in response.content.decode()
    response = client.post(_add_url(production), {"cron": "* * * * *", "duration": "soon"})
    assert response.status_code == 400
    assert "Enter a valid duration." in response.content.decode()
    assert not FreezeWindow.objects.exists()
    assert not AuditEvent.objects.filter(action="freeze_window.added").exists()


def test_an_admin_removes_a_freeze_window(client, production, admin_user):
    window = freeze_window_add(
        environment=production, cron="* * * * *", duration=timedelta(hours=1), actor=admin_user
    )
    client.force_login(admin_user)
    response = client.post(_remove_url(window))
    assert response.status_code == 302
    assert not production.freeze_windows.exists()
    assert AuditEvent.objects.get(action="freeze_window.removed").actor == admin_user
    assert "Frozen until" not in client.get(production.get_absolute_url()).content.decode()


@pytest.mark.parametrize("role", ["viewer", "developer", "approver"])
def test_others_see_the_windows_but_cannot_add_or_remove_them(
    client, production, admin_user, member, role
):
    window = freeze_window_add(
        environment=production,
        cron="0 17 * * 5",
        duration=timedelta(hours=63),
        actor=admin_user,
        reason="weekend",
    )
    client.force_login(member(role))
    page = client.get(production.get_absolute_url()).content.decode()
    assert "0 17 * * 5" in page and "weekend" in page  # they see it
    assert "Add a freeze window" not in page and _remove_url(window) not in page
    audit_before = AuditEvent.objects.count()
    add = {"cron": "* * * * *", "duration": "1:00:00", "reason": "mine"}
    assert client.post(_add_url(production), add).status_code == 403
    assert client.post(_remove_url(window)).status_code == 403
    assert list(FreezeWindow.objects.values_list("pk", flat=True)) == [window.pk]
    assert AuditEvent.objects.count() == audit_before


def test_a_window_of_another_environment_cannot_be_removed_from_this_one(
    client, project, production, admin_user
):
    dev = project.environments.get(name="dev")
    window = freeze_window_add(
        environment=dev, cron="* * * * *", duration=timedelta(hours=1), actor=admin_user
    )
    client.force_login(admin_user)
    url = reverse("releases:freeze-remove", args=[project.slug, production.name, window.pk])
    assert client.post(url).status_code == 404
    assert FreezeWindow.objects.filter(pk=window.pk).exists()
