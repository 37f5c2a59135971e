"""Response headers every page gets: the Content-Security-Policy (docs/security.md).

Django 5.2 has no CSP of its own. Scripts come only from this origin (htmx and the app's own
files under static/js/): no inline ``<script>``, no ``onclick=``, no ``eval``. Inline *styles*
stay allowed (``style=`` attributes in templates, htmx's indicator style).
"""

from django.conf import settings


def content_security_policy() -> str:
    return "; ".join(f"{name} {value}".strip() for name, value in settings.CSP_DIRECTIVES.items())


class ContentSecurityPolicyMiddleware:
    """Adds ``Content-Security-Policy`` (or ``…-Report-Only`` when CSP_REPORT_ONLY) to every
    response that has none yet."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.header = (
            "Content-Security-Policy-Report-Only"
            if settings.CSP_REPORT_ONLY
            else "Content-Security-Policy"
        )
        self.value = content_security_policy()

    def __call__(self, request):
        response = self.get_response(request)
        if self.value and self.header not in response:
            response[self.header] = self.value
        return response
