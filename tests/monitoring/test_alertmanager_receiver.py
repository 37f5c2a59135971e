"""POST /integrations/alertmanager/: Alertmanager's webhook (payload version 4)."""

import copy
import json
from pathlib import Path

import pytest
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.monitoring.choices import AlertSource, AlertStatus
from apps.monitoring.models import Alert

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"
TOKEN = "alertmanager-test-token-0123456789"  # noqa: S105


def payload(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def _token(settings):
    settings.ALERTMANAGER_TOKEN = TOKEN


@pytest.fixture
def post(client, django_capture_on_commit_callbacks):
    def send(body, token=TOKEN, raw=None):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
        with django_capture_on_commit_callbacks(execute=False):
            return client.post(
                reverse("alertmanager-receiver"),
                data=raw if raw is not None else json.dumps(body),
                content_type="application/json",
                **headers,
            )

    return send


def test_url_is_the_documented_one():
    assert reverse("alertmanager-receiver") == "/integrations/alertmanager/"


def test_missing_token_is_401_wrong_token_403_unconfigured_403(post, settings, project):
    body = payload("firing__project_environment")
    assert post(body, token=None).status_code == 401
    assert post(body, token="wrong").status_code == 403
    settings.ALERTMANAGER_TOKEN = ""
    assert post(body).status_code == 403
    assert not Alert.objects.exists()


def test_firing_alerts_map_labels_to_project_and_environment(post, project):
    response = post(payload("firing__project_environment"))
    assert response.status_code == 200, response.content
    assert response.json() == {"alerts": 2, "fired": 2, "resolved": 0}
    prod, staging = (
        Alert.objects.get(environment__name=name) for name in ("production", "staging")
    )
    assert prod.project == project and prod.environment.project == project
    assert prod.source == AlertSource.ALERTMANAGER and prod.status == AlertStatus.FIRING
    assert prod.rule == "ModelErrorRateHigh"
    assert prod.severity == "critical" and staging.severity == "warning"
    assert prod.summary == "5xx share above 5% for 5 minutes"
    assert prod.labels["instance"] == "127.0.0.1:8501"
    assert prod.annotations["generatorURL"].startswith("http://127.0.0.1:9090/graph")
    assert prod.starts_at.isoformat() == "2026-11-30T07:40:03.157000+00:00"
    assert AuditEvent.objects.filter(action="alert.fired", actor_label="alertmanager").count() == 2
    # Alertmanager repeats itself: the same alerts again are the same rows.
    assert post(payload("firing__project_environment")).status_code == 200
    assert Alert.objects.count() == 2


def test_resolved_resolves_the_matching_alert(post, project):
    post(payload("firing__project_environment"))
    response = post(payload("resolved__project_environment"))
    assert response.json()["resolved"] == 1
    prod = Alert.objects.get(environment__name="production")
    assert prod.status == AlertStatus.RESOLVED
    assert prod.resolved_at.isoformat() == "2026-11-30T07:55:03.157000+00:00"
    assert Alert.objects.get(environment__name="staging").status == AlertStatus.FIRING


def test_an_alert_without_project_is_kept_for_superusers(post, api, admin_user, member):
    assert post(payload("firing__no_project")).status_code == 200
    alert = Alert.objects.get()
    assert alert.project is None and alert.summary == "42 jobs waiting on train"
    assert [a["id"] for a in api(admin_user).get("/api/v1/alerts/").json()["results"]] == [alert.pk]
    assert api(member("viewer")).get("/api/v1/alerts/").json()["results"] == []


def _broken(mutate):
    body = copy.deepcopy(payload("firing__project_environment"))
    mutate(body)
    return body


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda b: b.update(version="3"), "version"),
        (lambda b: b.update(alerts={"status": "firing"}), "alerts"),
        (lambda b: b["alerts"][1].update(status="pending"), "alerts[1].status"),
        (lambda b: b["alerts"][1].update(startsAt="yesterday"), "alerts[1].startsAt"),
        (lambda b: b["alerts"][1]["labels"].update(severity=3), "alerts[1].labels"),
        (lambda b: b["alerts"][1].update(annotations=["x"]), "alerts[1].annotations"),
        (lambda b: b["alerts"][1]["labels"].update(project="nope"), "alerts[1].labels.project"),
        (
            lambda b: b["alerts"][1]["labels"].update(environment="qa"),
            "alerts[1].labels.environment",
        ),
        (
            lambda b: (
                b["commonLabels"].pop("alertname"),
                b["alerts"][1]["labels"].pop("alertname"),
            ),
            "no alertname",
        ),
    ],
)
def test_malformed_payload_is_400_and_nothing_is_stored(post, project, mutate, says):
    response = post(_broken(mutate))
    assert response.status_code == 400
    assert says in response.json()["detail"]
    # The first alert was fine, yet nothing of the payload is stored.
    assert not Alert.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="alert.").exists()


def test_not_json_is_400(post, project):
    assert post(None, raw="{not json").status_code == 400
    assert post(None, raw="[]").status_code == 400
    assert not Alert.objects.exists()


def test_get_is_not_allowed(client):
    assert client.get(reverse("alertmanager-receiver")).status_code == 405
