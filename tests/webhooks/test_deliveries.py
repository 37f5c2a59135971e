"""The ledger through the API and the UI: who sees what, filters, redelivery."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.pipelines.models import PipelineRun
from apps.webhooks.choices import DeliveryStatus
from apps.webhooks.models import WebhookDelivery
from apps.webhooks.services import delivery_prune
from tests.factories import UserFactory

from .conftest import payload_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def accepted(deliver):
    deliver("github", payload_bytes("github", "push__branch"), delivery_id="gh-1")
    return WebhookDelivery.objects.get(delivery_id="gh-1")


@pytest.fixture
def ledger(deliver, accepted):
    """One of each: accepted (fixture), ignored, ping, rejected, invalid."""
    deliver("github", payload_bytes("github", "issues__opened"), event="issues")
    deliver("github", payload_bytes("github", "ping__default"), event="ping")
    deliver("github", payload_bytes("github", "push__branch"), secret="forged")
    deliver("gitea", b"not json", event="push")
    return WebhookDelivery.objects.all()


# --- API ----------------------------------------------------------------------------------


def _list(client, **params):
    response = client.get(reverse("webhook-delivery-list"), params)
    assert response.status_code == 200, response.content
    return response.json()


def test_viewer_lists_and_filters_deliveries(api, member, ledger, hook_project):
    client = api(member("viewer"))
    body = _list(client)
    assert body["count"] == 5
    assert "payload" not in body["results"][0]  # lists stay light
    assert _list(client, status="ignored")["results"][0]["event"] == "issues"
    assert _list(client, provider="gitea")["count"] == 1
    assert _list(client, event="ping")["results"][0]["status"] == "ping"
    assert _list(client, project=hook_project.slug)["count"] == 5
    assert _list(client, project="other")["count"] == 0
    page = _list(client, page_size=2)
    assert (len(page["results"]), bool(page["next"])) == (2, True)
    accepted = _list(client, status="accepted")["results"][0]
    assert accepted["run"]["number"] == 1
    assert accepted["run"]["url"] == PipelineRun.objects.get().get_absolute_url()
    assert accepted["can_redeliver"] is True


def test_retrieve_shows_payload_headers_and_response(api, member, accepted):
    body = api(member("viewer")).get(reverse("webhook-delivery-detail", args=[accepted.pk])).json()
    assert body["payload"]["ref"] == "refs/heads/main"
    assert body["headers"]["X-GitHub-Event"] == "push"
    assert body["response_body"] == {"detail": "accepted", "delivery": accepted.pk}
    assert body["run"]["number"] == 1 and body["detail"] == "Run #1 started."
    assert body["http_status"] == 202


def test_outsiders_get_404_and_an_empty_list(api, accepted):
    client = api(UserFactory(username="outsider"))
    assert _list(client)["count"] == 0
    url = reverse("webhook-delivery-detail", args=[accepted.pk])
    assert client.get(url).status_code == 404
    redeliver = reverse("webhook-delivery-redeliver", args=[accepted.pk])
    assert client.post(redeliver).status_code == 404
    assert PipelineRun.objects.count() == 1


def test_anonymous_gets_nothing(api, accepted):
    assert api().get(reverse("webhook-delivery-list")).status_code in (401, 403)


def test_the_api_is_read_only(api, member, accepted):
    client = api(member("admin", "project-admin"))
    url = reverse("webhook-delivery-detail", args=[accepted.pk])
    assert client.delete(url).status_code == 405
    assert client.patch(url, {"status": "ignored"}, format="json").status_code == 405
    assert client.post(reverse("webhook-delivery-list"), {}, format="json").status_code == 405


def test_developer_redelivers_through_the_api(api, member, accepted):
    developer = member("developer")
    response = api(developer).post(reverse("webhook-delivery-redeliver", args=[accepted.pk]))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "accepted"
    assert body["redelivery_of"] == accepted.pk
    assert body["redelivered_by"] == developer.username
    assert body["run"]["number"] == 2
    run = PipelineRun.objects.get(number=2)
    assert (run.commit_sha, run.ref, run.created_by) == (
        "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
        "main",
        developer,
    )
    assert accepted.redeliveries.count() == 1


def test_viewer_may_not_redeliver(api, member, accepted):
    response = api(member("viewer")).post(reverse("webhook-delivery-redeliver", args=[accepted.pk]))
    assert response.status_code == 403
    assert PipelineRun.objects.count() == 1
    assert WebhookDelivery.objects.count() == 1


def test_a_rejected_delivery_cannot_be_redelivered(api, admin_user, ledger):
    rejected = ledger.get(status=DeliveryStatus.REJECTED)
    response = api(admin_user).post(reverse("webhook-delivery-redeliver", args=[rejected.pk]))
    assert response.status_code == 409
    assert "no trusted payload" in response.json()["detail"]


def test_redelivering_an_ignored_push_after_fixing_the_filter_starts_a_run(
    api, admin_user, deliver, hook_project
):
    hook_project.branch_filter = "release/*"
    hook_project.save()
    deliver("github", payload_bytes("github", "push__branch"), delivery_id="gh-2")
    ignored = WebhookDelivery.objects.get()
    assert ignored.status == DeliveryStatus.IGNORED
    hook_project.branch_filter = "main"
    hook_project.save()
    response = api(admin_user).post(reverse("webhook-delivery-redeliver", args=[ignored.pk]))
    assert response.json()["status"] == "accepted"
    assert PipelineRun.objects.count() == 1


def test_schema_lists_the_deliveries_and_redeliver(client):
    paths = client.get(reverse("schema"), {"format": "json"}).json()["paths"]
    assert "get" in paths["/api/v1/webhook-deliveries/"]
    assert "post" in paths["/api/v1/webhook-deliveries/{id}/redeliver/"]


# --- UI -----------------------------------------------------------------------------------


def test_project_deliveries_page(client, member, ledger, hook_project):
    client.force_login(member("viewer"))
    url = reverse("webhooks:list", args=[hook_project.slug])
    page = client.get(url).content.decode()
    assert f"/hooks/github/{hook_project.slug}/" in page
    for status in ("accepted", "ignored", "ping", "rejected", "invalid"):
        assert f">{status}<" in page
    filtered = client.get(url, {"status": "rejected"}).content.decode()
    assert ">rejected<" in filtered and ">accepted<" not in filtered
    partial = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<div id="deliveries"') and "<html" not in partial


def test_all_deliveries_page_in_the_nav(client, member, ledger, hook_project):
    client.force_login(member("viewer"))
    page = client.get(reverse("webhooks:all")).content.decode()
    assert reverse("webhooks:all") in page  # the nav link
    assert hook_project.slug in page and ">accepted<" in page


def test_delivery_detail_page(client, member, accepted, hook_project):
    client.force_login(member("viewer"))
    page = client.get(accepted.get_absolute_url()).content.decode()
    assert "X-GitHub-Event" in page and "Retrain with the March data" in page
    assert "HTTP 202" in page and PipelineRun.objects.get().get_absolute_url() in page
    assert "Redeliver" not in page
    download = client.get(reverse("webhooks:payload", args=[hook_project.slug, accepted.pk]))
    assert download.json()["ref"] == "refs/heads/main"
    assert "attachment" in download["Content-Disposition"]


def test_developer_redelivers_from_the_ui(client, member, accepted, hook_project):
    client.force_login(member("developer"))
    assert "Redeliver" in client.get(accepted.get_absolute_url()).content.decode()
    response = client.post(reverse("webhooks:redeliver", args=[hook_project.slug, accepted.pk]))
    new = WebhookDelivery.objects.get(redelivery_of=accepted)
    assert response.status_code == 302 and response["Location"] == new.get_absolute_url()
    assert (new.status, new.run.number) == (DeliveryStatus.ACCEPTED, 2)
    page = client.get(new.get_absolute_url()).content.decode()
    assert "Redelivered: Accepted" in page and "Redelivery of" in page


def test_viewer_gets_403_on_ui_redeliver(client, member, accepted, hook_project):
    client.force_login(member("viewer"))
    response = client.post(reverse("webhooks:redeliver", args=[hook_project.slug, accepted.pk]))
    assert response.status_code == 403
    assert PipelineRun.objects.count() == 1


def test_outsider_gets_404_on_delivery_pages(client, accepted, hook_project):
    client.force_login(UserFactory(username="outsider"))
    assert client.get(reverse("webhooks:list", args=[hook_project.slug])).status_code == 404
    assert client.get(accepted.get_absolute_url()).status_code == 404
    redeliver = reverse("webhooks:redeliver", args=[hook_project.slug, accepted.pk])
    assert client.post(redeliver).status_code == 404
    assert ">accepted<" not in client.get(reverse("webhooks:all")).content.decode()


def test_pages_need_a_login(client, accepted):
    response = client.get(accepted.get_absolute_url())
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- housekeeping ---------------------------------------------------------------------------


def test_prune_drops_old_untrusted_rows_and_old_payloads(ledger, settings):
    old = timezone.now() - settings.WEBHOOK_DELIVERY_RETENTION - timedelta(days=1)
    ledger.update(received_at=old)
    delivery_prune()
    left = WebhookDelivery.objects.all()
    assert {d.status for d in left} == {"accepted", "ignored", "ping"}
    assert not left.filter(payload__isnull=False).exists()
    assert PipelineRun.objects.get().webhook_deliveries.get().status == "accepted"


def test_prune_keeps_recent_rows(ledger):
    assert delivery_prune() == 0
    assert WebhookDelivery.objects.count() == 5
