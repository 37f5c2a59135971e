"""The Content-Security-Policy in a real browser: pages, htmx and Swagger UI work under it and
Chromium reports no violation."""

import pytest

from tests.factories import UserFactory

from .test_live_tail import _login, browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_pages_htmx_and_swagger_run_without_csp_violations(live_server, browser):  # noqa: F811
    UserFactory(username="dev-lead", is_superuser=True, is_staff=True)
    page = browser.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    _login(page, live_server, "dev-lead")
    # htmx is loaded and polls: the system page swaps its pings table every 2 s.
    with page.expect_request(lambda r: r.url.endswith("/system/") and "hx-request" in r.headers):
        page.goto(f"{live_server.url}/system/")
    assert page.evaluate("typeof window.htmx") == "object"
    # Swagger UI starts from its script file and renders the operations.
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock", timeout=15000)
    # An inline script injected into a page is refused (the policy is enforced).
    page.goto(f"{live_server.url}/")
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__inline = 1'; document.body.appendChild(s); }"
    )
    assert page.evaluate("window.__inline") is None
    refused = [v for v in violations if "inline" in v]
    assert refused and len(violations) == len(refused), violations
