"""Request metrics: one counter and one histogram per answered request, labelled by the URL
pattern's name (bounded: never the raw path).

Our own few lines rather than django-prometheus 2.5.0: that one does run in multiprocess mode
(its view reads PROMETHEUS_MULTIPROC_DIR, its docs say; not measured here), but it adds a
dependency and exports several histograms per view and method (plus per-model and database
series when its model mixins and backends are used), each a dozen lines of every scrape.
The control plane needs requests by view and code and a latency per view: two metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from . import metrics


def _view_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "<unresolved>"
    return match.view_name or "<unnamed>"


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        view = _view_name(request)
        method = request.method if request.method in _METHODS else "other"
        metrics.HTTP_REQUESTS.labels(method, view, str(response.status_code)).inc()
        metrics.HTTP_DURATION.labels(view).observe(time.perf_counter() - started)
        return response


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
