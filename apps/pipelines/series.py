"""The per-step metric series a job logs while it runs: JSON lines ``{"key", "step", "value"}``
appended to ``$CONTROLPLANE_METRICS_LOG``, tailed by the worker with each heartbeat and once at
the end, and sent as ``pipelines.signals.job_metrics_logged`` (training stores them).

Memory stays flat: each read takes at most ``READ_BYTES`` and only whole lines (a line still
being written is read on the next beat); a job sends at most ``METRICS_MAX_POINTS`` points.
"""

import json
import logging
import math
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from .models import Job
from .signals import job_metrics_logged

logger = logging.getLogger(__name__)

METRICS_LOG = "metrics.jsonl"  # in the workspace's OUTPUT_DIR
READ_BYTES = 4 << 20
KEY_MAX = 100


def parse_point(line: bytes) -> dict[str, Any] | None:
    """One line as a point, or None when it is not ``{"key": str, "step": int, "value":
    finite number}`` (a float step with an integer value is taken)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    key, step, value = data.get("key"), data.get("step"), data.get("value")
    if not isinstance(key, str) or not key or len(key) > KEY_MAX:
        return None
    if isinstance(step, bool) or not isinstance(step, int | float):
        return None
    if isinstance(step, float) and not step.is_integer():
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return {"key": key, "step": int(step), "value": float(value)}


class MetricsTail:
    """Follows one job's metrics log by byte offset. ``flush()`` is called from the heartbeat
    thread and, after that thread stopped, once more by the executor (``final=True``: a last
    line without its newline counts too); a lock keeps the two from reading at once."""

    def __init__(self, *, job_id: int, path: Path, log, max_points: int | None = None):
        self.job_id, self.path, self.log = job_id, path, log
        self.max_points = max_points if max_points is not None else settings.METRICS_MAX_POINTS
        self.offset = 0
        self.sent = 0
        self.bad = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def _read(self, final: bool) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(READ_BYTES)
        except FileNotFoundError:
            return []
        if not (final and len(data) < READ_BYTES):  # keep a line still being written
            end = data.rfind(b"\n")
            if end < 0:
                if len(data) == READ_BYTES:  # one line longer than a read: skip it
                    self.offset += len(data)
                    self.bad += 1
                return []
            data = data[: end + 1]
        self.offset += len(data)
        now = timezone.now()
        points = []
        for line in data.splitlines():
            if not line.strip():
                continue
            point = parse_point(line)
            if point is None:
                self.bad += 1
                continue
            if self.sent + len(points) >= self.max_points:
                self.dropped += 1
                continue
            point["at"] = now
            points.append(point)
        return points

    def flush(self, *, final: bool = False) -> int:
        """Send what was appended since the last flush; returns how many points were sent."""
        sent = 0
        with self._lock:
            while True:
                before = self.offset
                points = self._read(final)
                if points:
                    for receiver, outcome in job_metrics_logged.send_robust(
                        sender=Job, job_id=self.job_id, points=points
                    ):
                        if isinstance(outcome, Exception):
                            logger.error(
                                "Storing metric points of job %s failed in %r: %s",
                                self.job_id,
                                receiver,
                                outcome,
                            )
                    self.sent += len(points)
                    sent += len(points)
                # The final flush reads to the end; a beat reads one slice and lets the next go on.
                if not final or self.offset == before:
                    break
            if final:
                self._summary()
        return sent

    def _summary(self) -> None:
        if not (self.sent or self.bad or self.dropped):
            return
        line = f"metrics log: {self.sent} point(s)"
        if self.bad:
            line += f", {self.bad} bad line(s) skipped"
        if self.dropped:
            line += f", {self.dropped} over the cap of {self.max_points} dropped"
        self.log.line(line)
