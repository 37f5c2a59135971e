"""Which failures are worth retrying, and the one retry policy for tasks that call other servers.

Every outgoing call (Slack, mail, signed webhooks, commit statuses, the Kubernetes API) decides
"try again later" or "final" the same way: no answer at all, a timeout, a 5xx, 408 or 429 is
transient; anything else (a 4xx, a bad setting, an invalid URL) is final and is recorded on the
row with its message instead of being retried.
"""

from __future__ import annotations

from typing import Any

#: HTTP answers that mean "not now" rather than "no".
TRANSIENT_HTTP_STATUSES = frozenset({408, 425, 429})


class TransientError(Exception):
    """A call failed in a way worth retrying. ``response_code`` is the HTTP status, if any."""

    def __init__(self, message: str, response_code: int | None = None) -> None:
        super().__init__(message)
        self.response_code = response_code


def is_transient_status(code: int | None) -> bool:
    """A 5xx, 408, 425 or 429 answer."""
    return bool(code) and (code >= 500 or code in TRANSIENT_HTTP_STATUSES)


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        import requests

        errors += [requests.ConnectionError, requests.Timeout]
    except ImportError:  # pragma: no cover - requests is a dependency
        pass
    try:
        from urllib3 import exceptions as urllib3_exceptions

        errors += [
            urllib3_exceptions.ProtocolError,
            urllib3_exceptions.MaxRetryError,
            urllib3_exceptions.TimeoutError,
        ]
    except ImportError:  # pragma: no cover - urllib3 comes with requests
        pass
    return tuple(errors)


NETWORK_ERRORS = _network_errors()

try:
    import requests as _requests
except ImportError:  # pragma: no cover
    _requests = None


def response_status(exc: BaseException) -> int | None:
    """The HTTP status a client library attached to its exception, if any."""
    for holder in (exc, getattr(exc, "response", None)):
        for name in ("status_code", "status"):
            value: Any = getattr(holder, name, None)
            if isinstance(value, int):
                return value
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: our own :class:`TransientError`, no answer (refused, reset, timed out),
    or an HTTP error whose status is transient. Everything else is final."""
    if isinstance(exc, TransientError):
        return True
    code = response_status(exc)
    if code is not None:
        return is_transient_status(code)
    # TRICKY: every requests exception is an OSError, an invalid URL included; of those only
    # "no connection" and "no answer in time" may pass.
    if _requests is not None and isinstance(exc, _requests.RequestException):
        return isinstance(exc, (_requests.ConnectionError, _requests.Timeout))
    return isinstance(exc, NETWORK_ERRORS)


#: The options of every task that calls another server: results ignored, acknowledged after
#: it ran, one minute to answer, and the retry policy — exponential backoff from 5 s up to
#: 5 min with jitter, five retries, then the service records the last error as final.
#: ``@shared_task(**RETRY_TRANSIENT, name=...)``; raise :class:`TransientError` for what may pass.
RETRY_TRANSIENT: dict[str, Any] = {
    "ignore_result": True,
    "acks_late": True,
    "soft_time_limit": 60,
    "time_limit": 90,
    "autoretry_for": (TransientError,),
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}
