"""Security headers: no-store on the token page, a CSP without inline scripts everywhere, the
system page for staff only."""

import re

import pytest
from django.urls import reverse

from apps.core.models import WorkerPing
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_token_page_is_not_stored(client):
    client.force_login(UserFactory(username="t"))
    response = client.post(reverse("tokens"), {"name": "ci"})
    assert response.status_code == 200 and "cpt_" in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert "no-store" in client.get(reverse("tokens"))["Cache-Control"]


@pytest.mark.parametrize(
    "url", ["/login/", "/", "/tokens/", "/api/docs/", "/admin/", "/healthz", "/no-such-page/"]
)
def test_every_page_has_a_csp_without_inline_scripts(client, admin_user, url):
    client.force_login(admin_user)
    response = client.get(url)
    policy = response["Content-Security-Policy"]
    scripts = re.search(r"script-src ([^;]*)", policy).group(1)
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    assert "'self'" in scripts and "object-src 'none'" in policy


def test_templates_have_no_inline_scripts_or_handlers():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "templates"
    offenders = []
    for path in root.rglob("*.html"):
        text = path.read_text()
        for match in re.finditer(r"<script\b[^>]*>", text):
            if "src=" not in match.group(0):
                offenders.append(f"{path}: {match.group(0)}")
        offenders += [f"{path}: {m}" for m in re.findall(r"\son[a-z]+\s*=", text)]
        offenders += [f"{path}: {m}" for m in re.findall(r"javascript:|hx-on", text)]
    assert offenders == []


def test_swagger_ui_script_is_a_file(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/api/docs/").content.decode()
    assert not re.search(r"<script>(?!\s*</script>)", page)
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()


def test_system_page_and_ping_are_staff_only(client, admin_user):
    client.force_login(UserFactory(username="plain"))
    assert client.get(reverse("system")).status_code == 403
    assert client.post(reverse("system-ping")).status_code == 403
    assert WorkerPing.objects.count() == 0
    assert 'href="/system/"' not in client.get(reverse("dashboard")).content.decode()
    client.force_login(admin_user)
    assert client.get(reverse("system")).status_code == 200
