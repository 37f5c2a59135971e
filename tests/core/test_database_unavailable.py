"""The database away: 503 with Retry-After (never a 500 page), and the worker's retry of what it
must record. The real outage (a PostgreSQL restarted under load) is tests/faults/."""

import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client, override_settings
from django.urls import path

from apps.core.api.exceptions import exception_handler
from apps.core.database import RETRY_AFTER_SECONDS, retry_while_unavailable


def _refused(request):
    raise OperationalError('connection to server at "127.0.0.1", port 5440 failed: refused')


def _closed(request):
    raise InterfaceError("connection already closed")


def _bug(request):
    raise ValueError("a bug")


urlpatterns = [path("refused", _refused), path("closed", _closed), path("bug", _bug)]
handler500 = "apps.core.views.error_500"


@pytest.fixture
def anonymous():
    return Client(raise_request_exception=False)


@override_settings(ROOT_URLCONF=__name__)
@pytest.mark.parametrize("url", ["/refused", "/closed"])
def test_a_database_error_is_a_503_in_json_with_retry_after(anonymous, url):
    response = anonymous.get(url, HTTP_ACCEPT="application/json")
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response.json()["code"] == "database_unavailable"
    assert "database is unavailable" in response.json()["detail"]


@override_settings(ROOT_URLCONF=__name__)
def test_a_browser_gets_a_503_page(anonymous):
    response = anonymous.get("/refused", HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert response.status_code == 503
    assert b"Temporarily unavailable" in response.content
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)


@override_settings(ROOT_URLCONF=__name__)
def test_any_other_error_is_still_a_500(anonymous):
    assert anonymous.get("/bug").status_code == 500


def test_the_api_answers_503_with_retry_after():
    response = exception_handler(OperationalError("server closed the connection"), {})
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response.data["code"] == "database_unavailable"


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.django_db
def test_retry_while_unavailable_tries_again_until_the_database_answers():
    clock, calls = FakeClock(), []

    def record() -> str:
        calls.append(clock.now)
        if len(calls) < 4:
            raise OperationalError("the database system is shutting down")
        return "recorded"

    result = retry_while_unavailable(
        record, timeout=30, what="test", sleep=clock.sleep, clock=clock
    )
    assert result == "recorded"
    assert clock.slept == [0.5, 1.0, 2.0]  # doubling, from first_wait


@pytest.mark.django_db
def test_retry_while_unavailable_gives_up_after_its_timeout():
    clock = FakeClock()

    def never():
        raise InterfaceError("connection already closed")

    with pytest.raises(InterfaceError):
        retry_while_unavailable(never, timeout=10, what="test", sleep=clock.sleep, clock=clock)
    assert sum(clock.slept) <= 10
    assert clock.slept == [0.5, 1.0, 2.0, 4.0]  # the next wait (5 s) would pass the deadline


def test_other_errors_are_not_retried():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("not the database")

    with pytest.raises(ValueError, match="not the database"):
        retry_while_unavailable(broken, timeout=10, what="test", sleep=lambda s: None)
    assert calls == [1]
