"""One rule decides what is worth retrying, for every client library we call."""

import pytest
import requests
import urllib3

from apps.core.transient import TransientError, is_transient, is_transient_status


@pytest.mark.parametrize(
    ("code", "transient"),
    [(200, False), (400, False), (404, False), (408, True), (429, True), (500, True), (503, True)],
)
def test_statuses(code, transient):
    assert is_transient_status(code) is transient


def test_a_refused_connection_is_transient_an_invalid_url_is_not():
    with pytest.raises(requests.RequestException) as refused:
        requests.get("http://127.0.0.1:9/", timeout=2)  # discard port: nothing listens
    assert is_transient(refused.value)
    with pytest.raises(requests.RequestException) as invalid:
        requests.get("not a url", timeout=2)
    assert not is_transient(invalid.value)


def test_http_errors_by_their_status():
    response = requests.Response()
    response.status_code = 503
    assert is_transient(requests.HTTPError(response=response))
    response.status_code = 401
    assert not is_transient(requests.HTTPError(response=response))


def test_our_own_and_urllib3_errors():
    assert is_transient(TransientError("later", 429))
    assert is_transient(urllib3.exceptions.MaxRetryError(None, "/", "refused"))
    assert not is_transient(ValueError("bad setting"))
