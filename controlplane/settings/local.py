"""Developer laptop and the demo: DEBUG on; the embedded stack unless the environment says
otherwise."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str(
    "DJANGO_SECRET_KEY", default="insecure-local-only-7c1f0d4e9b8a46d2a1e5f3c2b7d9e0f1"
)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

# The demo's repository is a local one (var/git/churn-model.git).
CONTROLPLANE_ALLOW_LOCAL_REPOSITORIES = env.bool(
    "CONTROLPLANE_ALLOW_LOCAL_REPOSITORIES", default=True
)
