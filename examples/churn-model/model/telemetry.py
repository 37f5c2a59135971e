"""Observations for the control plane's monitoring, sent in the background (standard library).

    telemetry = Telemetry.from_env()      # None unless CONTROLPLANE_INGEST_URL and _TOKEN are set
    telemetry.record(request_id=..., features={...}, prediction=1, latency_ms=3.2)

``record`` never blocks and never raises: it puts the row on a bounded queue, or counts it as
dropped when the queue is full. One daemon thread takes rows off the queue and posts them as
gzipped columnar JSON (``POST $CONTROLPLANE_INGEST_URL?model_version=$CONTROLPLANE_MODEL_VERSION``
with ``{"columns": {"request_id": [...], "f0": [...], ...}}``, the shape the control plane
parses fastest)
every ``flush_seconds`` (5 s; ``$CONTROLPLANE_INGEST_FLUSH_SECONDS``) or ``batch_rows`` rows,
whichever comes first. A batch the control
plane did not take (unreachable, timeout, an error answer) is dropped and counted, and the
thread waits longer before the next attempt (up to ``max_backoff``), so a control plane that
is down costs a prediction nothing but the rows it would have reported.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any, Mapping

log = logging.getLogger("model.telemetry")


class Telemetry:
    def __init__(
        self,
        url: str,
        token: str,
        model_version: str | int | None = None,
        *,
        max_queue: int = 10_000,
        batch_rows: int = 1_000,
        flush_seconds: float = 5.0,
        timeout: float = 3.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.url = url
        if model_version not in (None, ""):
            self.url += ("&" if "?" in url else "?") + f"model_version={int(model_version)}"
        self.token = token
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.timeout = timeout
        self.max_backoff = max_backoff
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._dropped = 0
        self._sent = 0
        self._failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Telemetry | None:
        env = os.environ if environ is None else environ
        url, token = env.get("CONTROLPLANE_INGEST_URL"), env.get("CONTROLPLANE_INGEST_TOKEN")
        if not url or not token:
            return None
        flush = env.get("CONTROLPLANE_INGEST_FLUSH_SECONDS")
        if flush and "flush_seconds" not in kwargs:
            try:
                kwargs["flush_seconds"] = max(0.1, float(flush))
            except ValueError:
                log.warning("CONTROLPLANE_INGEST_FLUSH_SECONDS=%r is not a number", flush)
        return cls(url, token, env.get("CONTROLPLANE_MODEL_VERSION") or None, **kwargs)

    # --- the prediction side: never blocks, never raises ------------------------------------

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def sent(self) -> int:
        return self._sent

    def _drop(self, n: int) -> None:
        with self._lock:
            self._dropped += n

    def record(
        self,
        *,
        request_id: str,
        features: Mapping[str, Any],
        prediction: Any = None,
        latency_ms: float | None = None,
        timestamp: float | None = None,
    ) -> bool:
        """Queue one observation; False (and counted) when it had to be dropped."""
        try:
            row = dict(features)
            row["request_id"] = request_id
            row["timestamp"] = _iso(timestamp if timestamp is not None else time.time())
            row["prediction"] = prediction
            row["latency_ms"] = latency_ms
            self._queue.put_nowait(row)
            return True
        except queue.Full:
            self._drop(1)
            return False
        except Exception:  # a prediction must never fail because of telemetry
            self._drop(1)
            return False

    # --- the sending side -------------------------------------------------------------------

    def start(self) -> Telemetry:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (within ``timeout``) and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _take(self, deadline: float) -> list[dict]:
        """Up to ``batch_rows`` rows, waiting until ``deadline`` at most; when stopping, what
        is queued without waiting."""
        rows: list[dict] = []
        while len(rows) < self.batch_rows:
            try:
                if self._stop.is_set():
                    rows.append(self._queue.get_nowait())
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                rows.append(self._queue.get(timeout=min(left, 0.2)))
            except queue.Empty:
                if self._stop.is_set():
                    break
        return rows

    def _run(self) -> None:
        backoff = 0.0
        while True:
            stopping = self._stop.is_set()
            rows = self._take(time.monotonic() + self.flush_seconds)
            if rows:
                if self._post(rows):
                    backoff = 0.0
                else:
                    backoff = min(self.max_backoff, max(1.0, backoff * 2))
            if stopping and self._queue.empty():
                return
            if backoff and not stopping:
                # Rows keep arriving meanwhile; what the queue cannot hold is dropped, counted.
                self._stop.wait(backoff)

    def _post(self, rows: list[dict]) -> bool:
        try:
            names = list(dict.fromkeys(name for row in rows for name in row))
            columns = {name: [row.get(name) for row in rows] for name in names}
            body = gzip.compress(json.dumps({"columns": columns}, allow_nan=False).encode(), 5)
            request = urllib.request.Request(  # noqa: S310 - the URL the control plane gave
                self.url,
                data=body,
                method="POST",
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                },
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                response.read()
            with self._lock:
                self._sent += len(rows)
            return True
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            log.warning("telemetry: %d rows refused (%s): %s", len(rows), exc.code, detail)
        except Exception as exc:  # unreachable, timeout, anything: drop, count, go on
            log.warning("telemetry: %d rows not sent: %s", len(rows), exc)
        self._failures += 1
        self._drop(len(rows))
        return False


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")
