"""Production: nothing insecure by default, every secret from the environment, fail fast."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import FIELD_ENCRYPTION_KEYS, env


def _secret(name: str) -> str:
    """Read NAME or the file named by NAME_FILE (Docker / Kubernetes secrets)."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(f"{name} (or {name}_FILE) must be set in production.")
    return value


DEBUG = False
SECRET_KEY = _secret("DJANGO_SECRET_KEY")
if not FIELD_ENCRYPTION_KEYS:
    FIELD_ENCRYPTION_KEYS = [k.strip() for k in _secret("CONTROLPLANE_ENCRYPTION_KEYS").split(",")]
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# HTTPS everywhere; a TLS-terminating proxy in front sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
