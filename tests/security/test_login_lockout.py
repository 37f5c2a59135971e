"""Failed sign-ins and API-token attempts are locked out per account and per address."""

import pytest
from axes.models import AccessAttempt
from django.urls import reverse

from apps.accounts.models import ApiToken
from apps.accounts.services import api_token_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LIMIT = 5


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT


def _login(client, username, password, ip="10.0.0.1"):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def test_account_locked_after_failures_even_with_the_right_password(client):
    user = UserFactory(username="alice")
    user.set_password("right-horse-battery")
    user.save()
    for n in range(LIMIT - 1):
        # From different addresses: the account itself is what gets locked.
        assert _login(client, "alice", "wrong", ip=f"10.0.1.{n}").status_code == 200
    # The failure that reaches the limit is answered with the lockout already.
    assert _login(client, "alice", "wrong", ip="10.0.1.99").status_code == 429
    response = _login(client, "alice", "right-horse-battery", ip="10.0.2.1")
    assert response.status_code == 429
    page = response.content.decode()
    assert "Sign-in locked" in page
    assert "ask an administrator to unlock it" in page
    assert "_auth_user_id" not in client.session  # nothing changed: not signed in

    # Admin unlock: deleting the account's access attempts (what the admin page does).
    AccessAttempt.objects.filter(username="alice").delete()
    assert _login(client, "alice", "right-horse-battery", ip="10.0.2.1").status_code == 302


def test_address_locked_for_every_account(client):
    bob = UserFactory(username="bob")
    bob.set_password("bob-password-123")
    bob.save()
    for n in range(LIMIT):
        _login(client, f"nobody{n}", "wrong", ip="10.9.9.9")
    assert _login(client, "bob", "bob-password-123", ip="10.9.9.9").status_code == 429
    # Another address is not affected.
    assert _login(client, "bob", "bob-password-123", ip="10.9.9.10").status_code == 302


def test_admin_can_unlock_from_the_admin(client, admin_user):
    for _ in range(LIMIT):
        _login(client, "carol", "wrong", ip="10.3.3.3")
    attempt = AccessAttempt.objects.get(username="carol")
    client.force_login(admin_user)
    url = reverse("admin:axes_accessattempt_delete", args=[attempt.pk])
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not AccessAttempt.objects.filter(username="carol").exists()


def test_unknown_tokens_lock_out_the_address(api, member):
    from rest_framework.test import APIClient

    user = member("viewer", "scripted")
    _token, good = api_token_create(user=user, name="ci")
    client = APIClient()
    for n in range(LIMIT):
        client.credentials(HTTP_AUTHORIZATION=f"Bearer cpt_guess{n}")
        response = client.get("/api/v1/projects/", REMOTE_ADDR="10.7.7.7")
        assert response.status_code == (401 if n < LIMIT - 1 else 429)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {good}")
    response = client.get("/api/v1/projects/", REMOTE_ADDR="10.7.7.7")
    assert response.status_code == 429
    assert "locked" in response.json()["detail"]
    # The good token still works from elsewhere, and its last use was not recorded here.
    assert ApiToken.objects.get(user=user).last_used_at is None
    assert client.get("/api/v1/projects/", REMOTE_ADDR="10.7.7.8").status_code == 200


def test_revoked_token_attempts_count_against_its_account(member):
    from django.utils import timezone
    from rest_framework.test import APIClient

    user = member("viewer", "dana")
    old, old_raw = api_token_create(user=user, name="old")
    ApiToken.objects.filter(pk=old.pk).update(revoked_at=timezone.now())
    _new, new_raw = api_token_create(user=user, name="new")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {old_raw}")
    for n in range(LIMIT):
        response = client.get("/api/v1/projects/", REMOTE_ADDR=f"10.8.0.{n}")
        assert response.status_code == (401 if n < LIMIT - 1 else 429)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {new_raw}")
    assert client.get("/api/v1/projects/", REMOTE_ADDR="10.8.1.1").status_code == 429
    AccessAttempt.objects.filter(username="dana").delete()
    assert client.get("/api/v1/projects/", REMOTE_ADDR="10.8.1.1").status_code == 200
