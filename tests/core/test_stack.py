"""In CI the suite must run on the production stack, never silently on the embedded one."""

import os

import pytest
from django.conf import settings
from django.db import connection


@pytest.mark.skipif(
    os.environ.get("CI", "").lower() not in ("1", "true", "yes"),
    reason="only CI promises PostgreSQL and Redis",
)
@pytest.mark.django_db
def test_ci_runs_on_postgresql_and_redis():
    assert connection.vendor == "postgresql"
    assert settings.CELERY_BROKER_URL.startswith("redis://")
