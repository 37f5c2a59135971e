"""Silence matchers, the silence services, and the alert and silence pages and API."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.core.exceptions import ConflictError, PermissionDeniedError, ServiceError
from apps.core.models import AuditEvent
from apps.monitoring.models import Alert, Silence
from apps.monitoring.services.alerts import (
    alert_fire,
    alert_resolve,
    silence_create,
    silence_expire,
)
from apps.monitoring.silences import matcher_matches, matchers_clean, matchers_parse
from apps.projects.services import project_create

LABELS = {"alertname": "error_rate", "environment": "production", "project": "churn-model"}


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("=", "production", True),
        ("=", "prod", False),
        ("!=", "staging", True),
        ("!=", "production", False),
        ("=~", "prod.*", True),
        ("=~", "prod", False),  # anchored, like Alertmanager
        ("=~", "staging|production", True),
        ("!~", "stag.*", True),
        ("!~", "prod.*", False),
    ],
)
def test_matcher_ops(op, value, expected):
    assert matcher_matches({"name": "environment", "op": op, "value": value}, LABELS) is expected


def test_a_missing_label_matches_as_empty():
    assert matcher_matches({"name": "team", "op": "=", "value": ""}, LABELS)
    assert matcher_matches({"name": "team", "op": "!=", "value": "ml"}, LABELS)
    assert not matcher_matches({"name": "team", "op": "=~", "value": ".+"}, LABELS)


@pytest.mark.parametrize(
    ("matchers", "says"),
    [
        ([], "at least one"),
        ([{"name": "a b", "op": "=", "value": "x"}], "not a label name"),
        ([{"name": "a", "op": "==", "value": "x"}], "op must be"),
        ([{"name": "a", "op": "=~", "value": "("}], "not a regular expression"),
        ([{"name": "a", "op": "=~", "value": ".*"}], "silence everything"),
        ("alertname=x", "at least one"),
    ],
)
def test_bad_matchers_are_refused(matchers, says):
    with pytest.raises(ServiceError) as err:
        matchers_clean(matchers)
    assert says in err.value.message


def test_form_text_parses_to_matchers():
    assert matchers_parse('alertname="error_rate"\nenvironment=~prod.*\n\nteam!~"a,b"') == [
        {"name": "alertname", "op": "=", "value": "error_rate"},
        {"name": "environment", "op": "=~", "value": "prod.*"},
        {"name": "team", "op": "!~", "value": "a,b"},
    ]
    with pytest.raises(ServiceError):
        matchers_parse("just words")


# --- services -------------------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db
M = [{"name": "alertname", "op": "=", "value": "error_rate"}]


def soon(hours=1):
    return timezone.now() + timedelta(hours=hours)


@pytestmark_db
def test_silence_create_needs_developer_a_reason_and_a_future_end(project, member):
    with pytest.raises(PermissionDeniedError):
        silence_create(
            project=project, matchers=M, reason="x", ends_at=soon(), actor=member("viewer")
        )
    dev = member("developer")
    with pytest.raises(ServiceError, match="Say why"):
        silence_create(project=project, matchers=M, reason=" ", ends_at=soon(), actor=dev)
    with pytest.raises(ServiceError, match="future"):
        silence_create(project=project, matchers=M, reason="x", ends_at=soon(-1), actor=dev)
    with pytest.raises(PermissionDeniedError):
        silence_create(project=None, matchers=M, reason="x", ends_at=soon(), actor=dev)
    silence = silence_create(
        project=project, matchers=M, reason="deploying", ends_at=soon(), actor=dev
    )
    assert silence.created_by == dev and silence.is_active()
    event = AuditEvent.objects.get(action="silence.created")
    assert event.project_id == project.pk and event.data["text"] == 'alertname="error_rate"'


@pytestmark_db
def test_silence_expire_ends_it_now_once(project, member):
    dev = member("developer")
    silence = silence_create(project=project, matchers=M, reason="x", ends_at=soon(), actor=dev)
    with pytest.raises(PermissionDeniedError):
        silence_expire(silence=silence, actor=member("viewer"))
    silence_expire(silence=silence, actor=dev)
    silence.refresh_from_db()
    assert not silence.is_active() and silence.expired_by == dev
    assert AuditEvent.objects.filter(action="silence.expired", actor=dev).count() == 1
    with pytest.raises(ConflictError):
        silence_expire(silence=silence, actor=dev)


# --- pages ----------------------------------------------------------------------------------


def _fire(env, rule="error_rate", **labels):
    return alert_fire(
        rule=rule, labels=labels, severity="critical", summary=f"{rule} high", environment=env
    )


@pytestmark_db
def test_alert_list_filters_firing_and_resolved(client, project, production, member):
    firing = _fire(production, instance="a")
    gone = _fire(production, rule="latency_p95")
    alert_resolve(fingerprint=gone.fingerprint)
    client.force_login(member("viewer"))
    url = reverse("alerts:list", kwargs={"slug": project.slug})
    page = client.get(url).content.decode()  # firing by default
    assert f'id="alert-{firing.pk}"' in page and f'id="alert-{gone.pk}"' not in page
    assert "Acknowledge" not in page and "Silence…" not in page  # a viewer only reads
    page = client.get(url, {"status": "resolved"}).content.decode()
    assert f'id="alert-{gone.pk}"' in page and f'id="alert-{firing.pk}"' not in page
    page = client.get(url, {"status": ""}).content.decode()
    assert f'id="alert-{gone.pk}"' in page and f'id="alert-{firing.pk}"' in page
    detail = client.get(reverse("alerts:detail", kwargs={"slug": project.slug, "pk": firing.pk}))
    assert detail.status_code == 200 and "alert.fired" in detail.content.decode()


@pytestmark_db
def test_other_projects_alerts_are_not_found(client, admin_user, production, member):
    other = project_create(name="Secret model", actor=admin_user)
    alert = _fire(other.environments.get(name="production"))
    client.force_login(member("developer"))
    assert client.get(reverse("alerts:list", kwargs={"slug": other.slug})).status_code == 404
    url = reverse("alerts:detail", kwargs={"slug": other.slug, "pk": alert.pk})
    assert client.get(url).status_code == 404


@pytestmark_db
def test_acknowledge_from_the_page(client, project, production, member):
    alert = _fire(production)
    url = reverse("alerts:acknowledge", kwargs={"slug": project.slug, "pk": alert.pk})
    client.force_login(member("viewer"))
    assert client.post(url).status_code == 403
    dev = member("developer")
    client.force_login(dev)
    list_url = reverse("alerts:list", kwargs={"slug": project.slug})
    assert "Acknowledge" in client.get(list_url).content.decode()
    response = client.post(url, {"next": list_url}, follow=True)
    assert response.redirect_chain[-1][0] == list_url
    alert.refresh_from_db()
    assert alert.acknowledged_by == dev
    # `next` only leads to our own pages.
    other = _fire(production, rule="cpu")
    url = reverse("alerts:acknowledge", kwargs={"slug": project.slug, "pk": other.pk})
    assert client.post(url, {"next": "https://evil.example/"})["Location"].endswith(
        f"/alerts/{other.pk}/"
    )
    assert f"acknowledged by {dev.username}" in response.content.decode()


@pytestmark_db
def test_silence_from_an_alert_prefills_its_matchers_and_holds_it(
    client, project, production, member
):
    alert = _fire(production, instance="127.0.0.1:8501")
    new = reverse("alerts:silence-new", kwargs={"slug": project.slug})
    client.force_login(member("viewer"))
    assert client.get(new, {"alert": alert.pk}).status_code == 403
    client.force_login(member("developer"))
    form = client.get(new, {"alert": alert.pk}).content.decode()
    assert "alertname=&quot;error_rate&quot;" in form
    assert "environment=&quot;production&quot;" in form
    assert f"project=&quot;{project.slug}&quot;" in form
    assert "instance" not in form.split("<textarea")[1].split("</textarea>")[0]
    bad = client.post(new, {"matchers": "env=~(", "duration_hours": "2", "reason": "x"})
    assert bad.status_code == 200 and "not a regular expression" in bad.content.decode()
    response = client.post(
        new,
        {
            "matchers": 'alertname="error_rate"\nenvironment=~"prod.*"',
            "duration_hours": "2",
            "reason": "deploy in progress",
        },
    )
    assert response.status_code == 302
    silence = Silence.objects.get()
    assert silence.matchers[1] == {"name": "environment", "op": "=~", "value": "prod.*"}
    assert timedelta(hours=1.9) < silence.ends_at - timezone.now() <= timedelta(hours=2)
    page = client.get(reverse("alerts:list", kwargs={"slug": project.slug})).content.decode()
    assert "silenced until" in page


@pytestmark_db
def test_silences_page_lists_and_expires(client, project, member):
    dev = member("developer")
    silence = silence_create(
        project=project, matchers=M, reason="night deploy", ends_at=soon(), actor=dev
    )
    url = reverse("alerts:silences", kwargs={"slug": project.slug})
    client.force_login(member("viewer"))
    page = client.get(url).content.decode()
    assert "night deploy" in page and "Expire now" not in page
    expire = reverse("alerts:silence-expire", kwargs={"slug": project.slug, "pk": silence.pk})
    assert client.post(expire).status_code == 403
    client.force_login(dev)
    assert "Expire now" in client.get(url).content.decode()
    assert client.post(expire).status_code == 302
    silence.refresh_from_db()
    assert silence.expired_by == dev
    assert "night deploy" not in client.get(url).content.decode()  # active ones by default
    assert "night deploy" in client.get(url, {"show": "expired"}).content.decode()


# --- API ------------------------------------------------------------------------------------


@pytestmark_db
def test_api_alerts_viewer_reads_developer_acknowledges(
    api, project, production, member, admin_user
):
    mine = _fire(production)
    other = project_create(name="Other model", actor=admin_user)
    _fire(other.environments.get(name="production"))
    viewer = api(member("viewer"))
    body = viewer.get("/api/v1/alerts/", {"status": "firing"}).json()
    assert [a["id"] for a in body["results"]] == [mine.pk]
    assert body["results"][0]["environment"] == "production"
    assert viewer.post(f"/api/v1/alerts/{mine.pk}/acknowledge/").status_code == 403
    dev = api(member("developer"))
    response = dev.post(f"/api/v1/alerts/{mine.pk}/acknowledge/", {"comment": "on it"})
    assert response.status_code == 200 and response.json()["acknowledged_by"] == "developer-user"
    assert dev.post(f"/api/v1/alerts/{mine.pk}/acknowledge/").status_code == 409
    assert viewer.get("/api/v1/alerts/", {"status": "resolved"}).json()["results"] == []


@pytestmark_db
def test_api_silences_create_list_expire(api, project, member):
    body = {
        "project": project.slug,
        "matchers": M,
        "reason": "deploy",
        "ends_at": soon().isoformat(),
    }
    assert api(member("viewer")).post("/api/v1/silences/", body, format="json").status_code == 403
    dev = api(member("developer"))
    created = dev.post("/api/v1/silences/", body, format="json")
    assert created.status_code == 201, created.content
    sid = created.json()["id"]
    assert created.json()["active"] is True
    bad = dev.post(
        "/api/v1/silences/",
        {**body, "matchers": [{"name": "a", "op": "=~", "value": "("}]},
        format="json",
    )
    assert bad.status_code == 400
    assert [
        s["id"] for s in dev.get("/api/v1/silences/", {"active": "true"}).json()["results"]
    ] == [sid]
    expired = dev.post(f"/api/v1/silences/{sid}/expire/")
    assert expired.status_code == 200 and expired.json()["active"] is False
    assert dev.post(f"/api/v1/silences/{sid}/expire/").status_code == 409
    assert Alert.objects.count() == 0
