"""The test suite. ``CI=true`` (or DATABASE_URL / REDIS_URL) puts it on PostgreSQL and Redis."""

import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .base import DATABASES, env

SECRET_KEY = "test-only-secret-key-not-for-production-0123456789abcdef"  # noqa: S105
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
FIELD_ENCRYPTION_KEYS = ["2jB8q5Zq4cY7wq6C1kz8l9cJmVbY0oOeQ3lJp1a9sTg="]
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOGGING["root"]["level"] = env.str("LOG_LEVEL", default="WARNING")  # noqa: F405

# Job logs and workspaces of a test run go to a throw-away folder.
_TMP = Path(env.str("CONTROLPLANE_TEST_TMP", default=tempfile.mkdtemp(prefix="cp-test-")))
JOB_LOG_DIR = _TMP / "logs"
WORKSPACE_DIR = _TMP / "workspaces"
ARTIFACT_DIR = _TMP / "artifacts"
DATASET_DIR = _TMP / "datasets"
OBSERVATION_DIR = _TMP / "observations"
CONTROLPLANE_DEPLOY_DIR = Path(env.str("CONTROLPLANE_DEPLOY_DIR", default=str(_TMP / "deploy")))
STATIC_ROOT = _TMP / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["TEST"] = {
        "NAME": env.str("TEST_DATABASE_NAME", default="test_controlplane")
    }
else:
    # A file, not :memory:, so a worker process started by a test sees the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(_TMP / "test.sqlite3")}
from .base import CELERY_BROKER_TRANSPORT_OPTIONS  # noqa: E402

if CELERY_BROKER_URL.startswith("filesystem://"):  # noqa: F405
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **CELERY_BROKER_TRANSPORT_OPTIONS,
        "data_folder_in": str(_TMP / "broker" / "queue"),
        "data_folder_out": str(_TMP / "broker" / "queue"),
        "processed_folder": str(_TMP / "broker" / "processed"),
        "control_folder": str(_TMP / "broker" / "control"),
    }
# Short enough that the reaper test does not wait long.
JOB_HEARTBEAT_INTERVAL = 0.5

# Tests make their repositories in temporary folders (some tests turn it off).
CONTROLPLANE_ALLOW_LOCAL_REPOSITORIES = True
