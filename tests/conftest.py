import pytest
from rest_framework.test import APIClient

from apps.accounts.services import api_token_create
from apps.projects.services import membership_set, project_create

from .factories import UserFactory


@pytest.fixture
def admin_user(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def project(db, admin_user):
    return project_create(name="Churn model", actor=admin_user)


@pytest.fixture
def member(project, admin_user):
    """member("viewer") → a user with that role in ``project``."""

    def make(role: str, username: str | None = None):
        user = UserFactory(username=username or f"{role}-user")
        membership_set(project=project, user=user, role=role, actor=admin_user)
        return user

    return make


@pytest.fixture
def api():
    """api(user) → an APIClient authenticated with a real bearer token of that user."""

    def make(user=None):
        client = APIClient()
        if user is not None:
            _token, raw = api_token_create(user=user, name="test")
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make
