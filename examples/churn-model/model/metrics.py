"""The service's Prometheus metrics, in the text exposition format (standard library only).

    model_requests_total{endpoint,code}          counter
    model_request_duration_seconds{endpoint}     histogram
    model_predictions_total{class}               counter
    model_telemetry_dropped_total                counter (rows the telemetry could not send)
"""

from __future__ import annotations

import bisect
import threading
from typing import Callable

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ENDPOINTS = ("/predict", "/healthz", "/metrics", "/")


def endpoint_of(path: str) -> str:
    """A fixed set of label values, whatever paths clients ask for."""
    if path == "/health":
        return "/healthz"
    return path if path in ENDPOINTS else "other"


class Metrics:
    def __init__(self, dropped: Callable[[], int] = lambda: 0) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}
        self._buckets: dict[str, list[int]] = {}
        self._sum: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self._predictions: dict[str, int] = {}
        self._dropped = dropped

    def observe_request(self, endpoint: str, code: int, seconds: float) -> None:
        with self._lock:
            key = (endpoint, str(code))
            self._requests[key] = self._requests.get(key, 0) + 1
            buckets = self._buckets.setdefault(endpoint, [0] * len(BUCKETS))
            index = bisect.bisect_left(BUCKETS, seconds)
            if index < len(BUCKETS):
                buckets[index] += 1
            self._sum[endpoint] = self._sum.get(endpoint, 0.0) + seconds
            self._count[endpoint] = self._count.get(endpoint, 0) + 1

    def observe_predictions(self, classes) -> None:
        with self._lock:
            for c in classes:
                key = str(c)
                self._predictions[key] = self._predictions.get(key, 0) + 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP model_requests_total HTTP requests by endpoint and status code.",
                "# TYPE model_requests_total counter",
            ]
            for (endpoint, code), n in sorted(self._requests.items()):
                lines.append(f'model_requests_total{{endpoint="{endpoint}",code="{code}"}} {n}')
            lines += [
                "# HELP model_request_duration_seconds Time to answer a request.",
                "# TYPE model_request_duration_seconds histogram",
            ]
            for endpoint in sorted(self._buckets):
                cumulative = 0
                for bound, n in zip(BUCKETS, self._buckets[endpoint]):
                    cumulative += n
                    lines.append(
                        f'model_request_duration_seconds_bucket{{endpoint="{endpoint}",'
                        f'le="{bound}"}} {cumulative}'
                    )
                lines.append(
                    f'model_request_duration_seconds_bucket{{endpoint="{endpoint}",le="+Inf"}} '
                    f"{self._count[endpoint]}"
                )
                lines.append(
                    f'model_request_duration_seconds_sum{{endpoint="{endpoint}"}} '
                    f"{self._sum[endpoint]!r}"
                )
                lines.append(
                    f'model_request_duration_seconds_count{{endpoint="{endpoint}"}} '
                    f"{self._count[endpoint]}"
                )
            lines += [
                "# HELP model_predictions_total Predictions made, by predicted class.",
                "# TYPE model_predictions_total counter",
            ]
            for cls, n in sorted(self._predictions.items()):
                lines.append(f'model_predictions_total{{class="{cls}"}} {n}')
        lines += [
            "# HELP model_telemetry_dropped_total Observations not sent to the control plane.",
            "# TYPE model_telemetry_dropped_total counter",
            f"model_telemetry_dropped_total {self._dropped()}",
        ]
        return "\n".join(lines) + "\n"
