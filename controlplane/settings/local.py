"""Developer laptop and the demo: DEBUG on; the embedded stack unless the environment says
otherwise.

The secret key and the encryption key are random per install: made on first start and kept
under ``var/`` (mode 0600), never taken from the source. The environment still wins
(DJANGO_SECRET_KEY, CONTROLPLANE_ENCRYPTION_KEYS).
"""

import os
import secrets
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet

from .base import *  # noqa: F403
from .base import FIELD_ENCRYPTION_KEYS, VAR_DIR, env


def install_secret(path: Path, make) -> str:
    """The value kept in ``path``; made with ``make()`` when there is none yet.

    TRICKY: web, worker and beat start together and may all get here first. The value is
    written to a temporary file and hard-linked into place, which fails when another process
    won: then its value is read, so all of them use the same one.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(make() + "\n")
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    return path.read_text(encoding="utf-8").strip()


DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or install_secret(
    VAR_DIR / "secret_key", lambda: secrets.token_urlsafe(50)
)
if not FIELD_ENCRYPTION_KEYS:
    FIELD_ENCRYPTION_KEYS = [
        install_secret(VAR_DIR / "encryption_key", lambda: Fernet.generate_key().decode())
    ]
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

# The demo's repository is a local one (var/git/churn-model.git).
CONTROLPLANE_ALLOW_LOCAL_REPOSITORIES = env.bool(
    "CONTROLPLANE_ALLOW_LOCAL_REPOSITORIES", default=True
)
