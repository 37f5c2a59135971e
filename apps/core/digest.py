"""The SHA-256 of a file, read in 1 MiB blocks (models, bundles, datasets can be large)."""

import hashlib
from pathlib import Path

BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    """The hex digest of the file at ``path`` (raises OSError as open() does)."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(BLOCK):
            sha.update(chunk)
    return sha.hexdigest()
