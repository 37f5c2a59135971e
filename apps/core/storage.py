"""A volume that filled up (ENOSPC, or a quota: EDQUOT): recognised in one place and told in one
message that names the path, so a job fails with "Disk full: … <path> …" instead of a bare
``[Errno 28]`` (or of a worker that stops recording anything)."""

import errno
import os
from pathlib import Path

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_message(path: Path | str, exc: OSError, *, what: str = "") -> str:
    """``Disk full: cannot write the job log /var/logs/3/7.log (No space left on device).``"""
    reason = os.strerror(exc.errno or errno.ENOSPC)
    return f"Disk full: cannot write {what + ' ' if what else ''}{path} ({reason})."
