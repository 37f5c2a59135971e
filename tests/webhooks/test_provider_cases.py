"""Deliveries as each provider documents them, in the cases a simpler reading gets wrong:
GitHub's delivery id shared by hooks, GitLab system hooks and the pushed commit's details,
Gitea's form-encoded deliveries (it signs the JSON, not the form)."""

import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest

from apps.pipelines.choices import Trigger
from apps.pipelines.commits import Commit
from apps.pipelines.models import PipelineRun
from apps.webhooks.choices import DeliveryStatus
from apps.webhooks.models import WebhookDelivery
from apps.webhooks.providers import get_provider

from .conftest import SECRET, payload, payload_bytes

pytestmark = pytest.mark.django_db


# --- GitHub: X-GitHub-Delivery names the event, not the hook -------------------------------------


def test_two_github_hooks_on_one_project_are_two_deliveries(deliver):
    body = payload_bytes("github", "push__branch")
    guid = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    first = deliver("github", body, delivery_id=guid, headers={"X-GitHub-Hook-ID": "101"})
    second = deliver("github", body, delivery_id=guid, headers={"X-GitHub-Hook-ID": "202"})
    assert first.json()["detail"] == second.json()["detail"] == "accepted"
    assert PipelineRun.objects.count() == 2
    rows = WebhookDelivery.objects.order_by("id")
    assert [(r.hook_id, r.delivery_id) for r in rows] == [("101", guid), ("202", guid)]
    assert rows[0].headers["X-GitHub-Hook-ID"] == "101"


def test_a_github_redelivery_of_one_hook_is_still_a_duplicate(deliver):
    body = payload_bytes("github", "push__branch")
    guid = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    hook = {"X-GitHub-Hook-ID": "101"}
    assert deliver("github", body, delivery_id=guid, headers=hook).json()["detail"] == "accepted"
    again = deliver("github", body, delivery_id=guid, headers=hook)
    assert (again.status_code, again.json()) == (202, {"detail": "already received"})
    assert PipelineRun.objects.count() == 1
    assert WebhookDelivery.objects.filter(status=DeliveryStatus.DUPLICATE).count() == 1


# --- GitLab system hooks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("system_hook__push", (Trigger.PUSH, "main", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7")),
        (
            "system_hook__tag_push",
            (Trigger.TAG, "v1.0.0", "5937ac0a7beb003549fc5fd26fc247adbce4a52e"),
        ),
    ],
)
def test_a_gitlab_system_hook_push_starts_a_run(deliver, fixture, expected):
    body = payload_bytes("gitlab", fixture)
    assert "object_kind" not in payload("gitlab", fixture)  # as GitLab documents it
    response = deliver("gitlab", body, event="System Hook")
    assert response.status_code == 202, response.content
    assert response.json()["detail"] == "accepted"
    run = PipelineRun.objects.get()
    assert (run.trigger, run.ref, run.commit_sha) == expected
    # The commit a system hook lists is not the pushed one: its details are not borrowed.
    assert (run.commit_message, run.commit_author, run.commit_url) == ("", "", "")


def test_other_gitlab_system_hook_events_are_ignored(deliver):
    body = payload_bytes("gitlab", "system_hook__project_create")
    response = deliver("gitlab", body, event="System Hook")
    assert response.status_code == 202
    assert WebhookDelivery.objects.get().status == DeliveryStatus.IGNORED
    assert not PipelineRun.objects.exists()


# --- GitLab: the pushed commit's message and author, or none -----------------------------------


def test_gitlab_commit_details_are_the_pushed_commits(deliver):
    deliver("gitlab", payload_bytes("gitlab", "push__branch"), event="Push Hook")
    run = PipelineRun.objects.get()
    assert run.commit_sha == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert run.commit_message == "Pin scikit-learn\n"
    assert run.commit_url.endswith("/commit/da1560886d4f094c3e6c9ef40349f7d38b5d27d7")


def test_gitlab_commit_details_stay_empty_when_the_pushed_commit_is_not_listed(deliver):
    fixture = payload("gitlab", "push__head-not-listed")
    assert fixture["checkout_sha"] not in {c["id"] for c in fixture["commits"]}
    deliver("gitlab", payload_bytes("gitlab", "push__head-not-listed"), event="Push Hook")
    run = PipelineRun.objects.get()
    assert run.commit_sha == fixture["checkout_sha"]
    listed = {c["message"] for c in fixture["commits"]}
    assert run.commit_message not in listed and run.commit_message == ""
    assert (run.commit_author, run.commit_author_email, run.commit_url) == ("", "", "")


def test_a_gitlab_tag_message_is_not_taken_for_the_commit_message(deliver):
    deliver("gitlab", payload_bytes("gitlab", "tag_push__default"), event="Tag Push Hook")
    assert PipelineRun.objects.get().commit_message == ""  # "First release" is the tag's


def test_the_parsed_push_carries_a_commit():
    push = get_provider("gitlab").parse_push(payload("gitlab", "push__branch"))
    assert push.commit == Commit(
        sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        ref="main",
        message="Pin scikit-learn\n",
        author="Grace Hopper",
        author_email="grace@example.com",
        url="https://gitlab.example.com/ml/churn-model/-/commit/da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    )
    assert (push.ref, push.name, push.sha) == ("refs/heads/main", "main", push.commit.sha)


# --- Gitea / Forgejo form-encoded deliveries ------------------------------------------------


def _gitea_form(json_bytes: bytes) -> bytes:
    # What Gitea sends for POST content type application/x-www-form-urlencoded (url.Values).
    return urlencode({"payload": json_bytes.decode()}).encode()


def _gitea_signature(secret: str, signed: bytes) -> dict[str, str]:
    signature = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return {"X-Gitea-Signature": signature, "X-Forgejo-Signature": signature}


def test_a_form_encoded_gitea_delivery_is_verified_over_its_json(deliver):
    json_bytes = payload_bytes("gitea", "push__branch")
    response = deliver(
        "gitea",
        _gitea_form(json_bytes),
        content_type="application/x-www-form-urlencoded",
        headers=_gitea_signature(SECRET, json_bytes),  # Gitea signs the JSON payload
    )
    assert response.status_code == 202, response.content
    run = PipelineRun.objects.get()
    assert run.commit_sha == "bffeb74224043ba2feb48d137756c8a9331c449a"
    assert WebhookDelivery.objects.get().payload == json.loads(json_bytes)


def test_a_gitea_form_signed_over_the_form_body_is_refused(deliver):
    form = _gitea_form(payload_bytes("gitea", "push__branch"))
    response = deliver(
        "gitea",
        form,
        content_type="application/x-www-form-urlencoded",
        headers=_gitea_signature(SECRET, form),  # not what Gitea does: a forgery
    )
    assert response.status_code == 403
    assert not PipelineRun.objects.exists()


def test_a_gitea_form_without_a_payload_field_is_refused(deliver):
    form = urlencode({"data": "{}"}).encode()
    response = deliver(
        "gitea",
        form,
        content_type="application/x-www-form-urlencoded",
        headers=_gitea_signature(SECRET, b"{}"),
    )
    assert response.status_code == 403


def test_the_migration_moves_a_gitlab_whsec_secret_to_the_signing_token(hook_project):
    import importlib

    from django.apps import apps

    migration = importlib.import_module(
        "apps.projects.migrations.0003_project_webhook_signing_token"
    )
    token = "whsec_" + "a" * 44
    hook_project.git_provider, hook_project.webhook_secret = "gitlab", token
    hook_project.save()
    migration.move_gitlab_signing_tokens(apps, None)
    hook_project.refresh_from_db()
    assert (hook_project.webhook_secret, hook_project.webhook_signing_token) == ("", token)
    migration.move_back(apps, None)
    hook_project.refresh_from_db()
    assert (hook_project.webhook_secret, hook_project.webhook_signing_token) == (token, "")


def test_the_migration_leaves_other_secrets_alone(hook_project):
    import importlib

    from django.apps import apps

    migration = importlib.import_module(
        "apps.projects.migrations.0003_project_webhook_signing_token"
    )
    hook_project.git_provider = "gitlab"
    hook_project.save()
    migration.move_gitlab_signing_tokens(apps, None)
    hook_project.refresh_from_db()
    assert (hook_project.webhook_secret, hook_project.webhook_signing_token) == (SECRET, "")
