"""When the database is away (restarted, failed over, unreachable): what the web answers and how
a worker waits for it.

The web answers **503 with Retry-After** and a message that says so, never a 500 page: the API
and the webhook receivers in JSON (a Git server or a script retries), a browser in HTML. The
worker keeps what it already did: recording a job's outcome is tried again until the database
is back (:func:`retry_while_unavailable`), within the time after which the reaper would count
the job's worker as lost anyway. Django's ``CONN_HEALTH_CHECKS`` and ``close_old_connections``
drop the broken connections, so nothing needs a restart (docs/reliability.md, "Database
restarted").
"""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, close_old_connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: A lost or refused connection, a server shutting down, "connection already closed".
#: (OperationalError also covers a deadlock or a statement timeout: "try again" holds there too.)
DATABASE_ERRORS = (OperationalError, InterfaceError)
#: What the 503 tells clients to wait before trying again, in seconds.
RETRY_AFTER_SECONDS = 5
UNAVAILABLE_DETAIL = "The database is unavailable; try again in a few seconds."
UNAVAILABLE_BODY = {"detail": UNAVAILABLE_DETAIL, "code": "database_unavailable"}
UNAVAILABLE_HEADERS = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}


def is_database_unavailable(exc: BaseException | None) -> bool:
    return isinstance(exc, DATABASE_ERRORS)


def unavailable_response(request: HttpRequest | None) -> HttpResponse:
    """The 503: JSON unless the client asks for HTML (a browser), with Retry-After. Renders
    nothing that could touch the database (no context processors, no user)."""
    accept = request.headers.get("Accept", "") if request is not None else ""
    if "text/html" in accept:
        response: HttpResponse = HttpResponse(
            render_to_string("503.html", {"detail": UNAVAILABLE_DETAIL}), status=503
        )
    else:
        response = JsonResponse(UNAVAILABLE_BODY, status=503)
    for name, value in UNAVAILABLE_HEADERS.items():
        response[name] = value
    return response


def retry_while_unavailable(
    call: Callable[[], T],
    *,
    timeout: float,
    what: str,
    first_wait: float = 0.5,
    max_wait: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``call()``, tried again while it fails with a database connection error, waiting
    ``first_wait`` seconds doubling up to ``max_wait``, for at most ``timeout`` seconds; then
    the last error is raised. Between tries this thread's broken connections are dropped (the
    next try connects afresh). ``call`` must be a whole transaction: a failed one rolled back."""
    deadline = clock() + timeout
    wait = first_wait
    while True:
        try:
            return call()
        except DATABASE_ERRORS as exc:
            if clock() + wait > deadline:
                raise
            logger.warning(
                "%s: the database is unavailable (%s); trying again in %.1fs",
                what,
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                wait,
            )
            close_old_connections()
            sleep(wait)
            wait = min(wait * 2, max_wait)
