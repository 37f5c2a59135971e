"""Job logs: one append-only file per job attempt set, written in chunks, secrets masked.

Memory stays flat whatever the output size: the writer holds at most one chunk plus the
longest secret it masks.
"""

import os
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings

MASK = "********"


def log_path(job_id: int, run_id: int) -> Path:
    return Path(settings.JOB_LOG_DIR) / str(run_id) / f"{job_id}.log"


class LogWriter:
    """Append bytes to a job's log, replacing secret values with ``********``.

    A secret may be split across two chunks, so the writer holds back the last
    ``len(longest secret) - 1`` bytes until the next chunk (or close) arrives.
    """

    def __init__(self, path: Path, secrets: Iterable[str] = ()) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = open(path, "ab")  # noqa: SIM115 (closed in close())
        self._secrets = sorted(
            {s.encode() for s in secrets if s and len(s) >= 3}, key=len, reverse=True
        )
        self._keep = max((len(s) for s in self._secrets), default=1) - 1
        self._pending = b""
        self.bytes_written = path.stat().st_size

    def _mask(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret, MASK.encode())
        return data

    def write(self, data: bytes) -> None:
        if not self._secrets:
            self._emit(data)
            return
        data = self._mask(self._pending + data)
        if self._keep and len(data) > self._keep:
            self._pending, data = data[-self._keep :], data[: -self._keep]
        elif self._keep:
            self._pending, data = data, b""
        self._emit(data)

    def _emit(self, data: bytes) -> None:
        if data:
            self._fh.write(data)
            self._fh.flush()
            self.bytes_written += len(data)

    def line(self, text: str) -> None:
        """A line from the control plane itself (not the job), shown with a marker."""
        self.write(f"\x1b[36m[controlplane] {text}\x1b[0m\n".encode())

    def close(self) -> None:
        if self._pending:
            self._emit(self._mask(self._pending))
            self._pending = b""
        self._fh.close()


def read_range(path: Path, offset: int = 0, limit: int = 256 * 1024) -> tuple[bytes, int]:
    """Read at most ``limit`` bytes from ``offset``; return them and the next offset."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(limit)
    except FileNotFoundError:
        return b"", offset
    return data, offset + len(data)


def log_size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
