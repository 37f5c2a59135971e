"""Freeze windows through the API: admins add and remove them; a deploy asked for inside one
is refused with the window's reason and end, and nothing is deployed."""

import pytest

from apps.core.models import AuditEvent
from apps.releases.models import Deployment
from apps.releases.services import release_create

pytestmark = pytest.mark.django_db


def test_admins_freeze_an_environment_and_deploys_wait(project, admin_user, member, api):
    dev = project.environments.get(name="dev")
    url = f"/api/v1/environments/{dev.pk}/freeze-windows/"
    window = {"cron": "* * * * *", "duration": "1 00:00:00", "reason": "Black Friday"}
    for role in ("viewer", "developer", "approver"):
        assert api(member(role)).post(url, window, format="json").status_code == 403
    admin = api(admin_user)
    bad = admin.post(url, {**window, "cron": "every friday"}, format="json")
    assert bad.status_code == 400 and "cron" in bad.json()
    created = admin.post(url, window, format="json")
    assert created.status_code == 201, created.content
    assert AuditEvent.objects.filter(action="freeze_window.added").count() == 1
    assert api(admin_user).get(f"/api/v1/environments/{dev.pk}/").json()["freeze_windows"][0][
        "reason"
    ] == ("Black Friday")

    release = release_create(project=project, version="v1", commit_sha="abc", actor=admin_user)
    response = api(member("developer", "dev2")).post(
        f"/api/v1/releases/{release.pk}/deploy/", {"environment": dev.pk}, format="json"
    )
    assert response.status_code == 409
    assert "dev is frozen (Black Friday) until" in response.json()["detail"]
    assert not Deployment.objects.exists()

    remove = f"{url}{created.json()['id']}/"
    assert api(member("approver", "a2")).delete(remove).status_code == 403
    assert admin.delete(remove).status_code == 204
    assert not dev.freeze_windows.exists()
    response = api(member("developer", "dev3")).post(
        f"/api/v1/releases/{release.pk}/deploy/", {"environment": dev.pk}, format="json"
    )
    assert response.status_code == 202
