"""The content-addressed bundle store: every bundle a build job makes is kept once, by digest,
so a release can be deployed (process deployer) or rebuilt long after its job's workspace is gone.
"""

import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings


def bundle_store_path(digest: str) -> Path:
    """``sha256:<hex>`` → where that bundle lies (whether or not it is there)."""
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or len(hexdigest) != 64 or set(hexdigest) - set("0123456789abcdef"):
        raise ValueError(f"Not a bundle digest: {digest!r}")
    return Path(settings.ARTIFACT_DIR) / "bundles" / f"{hexdigest}.tar.gz"


def bundle_store_put(path: Path, digest: str) -> Path:
    """Keep ``path`` under its digest (atomic; a bundle already kept is left as it is)."""
    target = bundle_store_path(digest)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
