"""The receivers as a Git server meets them: signatures, answers, the ledger, runs started."""

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from django.test import override_settings

from apps.core.models import AuditEvent
from apps.pipelines.choices import Trigger
from apps.pipelines.models import PipelineRun
from apps.webhooks.choices import DeliveryStatus
from apps.webhooks.models import RejectedDeliveryCount, WebhookDelivery
from apps.webhooks.outbox import INTERNAL_ERROR, delivery_start_runs

from .conftest import SECRET, hook_url, payload, payload_bytes

pytestmark = pytest.mark.django_db

FORBIDDEN = {"detail": "Forbidden."}

# provider, fixture, event header value, expected (trigger, ref, sha, author, email)
PUSHES = [
    (
        "github",
        "push__branch",
        "push",
        (Trigger.PUSH, "main", "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "Ada Lovelace"),
    ),
    (
        "github",
        "push__tag",
        "push",
        (Trigger.TAG, "v1.2.0", "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "Ada Lovelace"),
    ),
    (
        "gitlab",
        "push__branch",
        "Push Hook",
        (Trigger.PUSH, "main", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "Grace Hopper"),
    ),
    (
        "gitlab",
        "tag_push__default",
        "Tag Push Hook",
        (Trigger.TAG, "v1.0.0", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", ""),
    ),
    (
        "gitea",
        "push__branch",
        "push",
        (Trigger.PUSH, "main", "bffeb74224043ba2feb48d137756c8a9331c449a", "Linus"),
    ),
    (
        "gitea",
        "push__tag",
        "push",
        (Trigger.TAG, "v0.3.0", "bffeb74224043ba2feb48d137756c8a9331c449a", "Linus"),
    ),
    (
        "generic",
        "push__branch",
        "push",
        (Trigger.PUSH, "main", "4f2a9c1e7d3b5a6f8e0c2d4b6a8f0e1c3d5b7a9f", "Mirror Bot"),
    ),
    (
        "generic",
        "push__tag",
        "push",
        (Trigger.TAG, "v2.0.0", "4f2a9c1e7d3b5a6f8e0c2d4b6a8f0e1c3d5b7a9f", "Release Bot"),
    ),
    (
        "generic",
        "push__bare-branch",
        "push",
        (Trigger.PUSH, "release/2026-03", "4f2a9c1e7d3b5a6f8e0c2d4b6a8f0e1c3d5b7a9f", ""),
    ),
]


@pytest.mark.parametrize(
    ("provider", "fixture", "event", "expected"), PUSHES, ids=lambda v: str(v)[:20]
)
def test_a_signed_push_starts_a_run(deliver, hook_project, provider, fixture, event, expected):
    trigger, ref, sha, author = expected
    response = deliver(
        provider, payload_bytes(provider, fixture), event=event, delivery_id="d-1", start_runs=False
    )

    assert response.status_code == 202, response.content
    delivery = WebhookDelivery.objects.get()
    assert response.json() == {"detail": "accepted", "delivery": delivery.pk}
    # Answered at once; the run is the worker's (the row is the outbox).
    assert (delivery.status, delivery.run, delivery.awaiting_run) == ("accepted", None, True)
    assert not PipelineRun.objects.exists()
    assert delivery_start_runs() == 1

    run = PipelineRun.objects.get()
    assert (run.project, run.trigger, run.ref, run.commit_sha) == (hook_project, trigger, ref, sha)
    assert run.commit_author == author
    created = AuditEvent.objects.get(action="pipelinerun.created")
    assert created.actor_label == f"webhook:{provider}"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.ACCEPTED
    assert (delivery.run, delivery.delivery_id, delivery.event) == (run, "d-1", event)
    assert (delivery.detail, delivery.awaiting_run) == (f"Run #{run.number} started.", False)
    assert delivery.payload == payload(provider, fixture)
    assert delivery.http_status == 202 and delivery.response_body == response.json()
    assert delivery_start_runs() == 0  # nothing twice
    assert PipelineRun.objects.count() == 1


def test_commit_details_reach_the_run(deliver):
    deliver("github", payload_bytes("github", "push__branch"))
    run = PipelineRun.objects.get()
    assert run.commit_message.startswith("Retrain with the March data")
    assert run.commit_author_email == "ada@example.com"
    assert run.commit_url.endswith("/commit/0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c")


def test_secrets_and_signatures_are_not_kept_in_the_ledger(deliver):
    for provider, fixture in [("github", "push__branch"), ("gitlab", "push__branch")]:
        deliver(provider, payload_bytes(provider, fixture))
    for delivery in WebhookDelivery.objects.all():
        stored = json.dumps(delivery.headers).lower()
        assert SECRET.lower() not in stored
        assert "signature" not in stored and "token" not in stored
        assert "user-agent" in stored


# --- signatures ---------------------------------------------------------------------------

SIGNATURE_HEADERS = {
    "github": "X-Hub-Signature-256",
    "gitlab": "X-Gitlab-Token",
    "gitea": "X-Gitea-Signature",
    "generic": "X-Controlplane-Signature",
}
BRANCH_PUSH = {
    "github": ("push__branch", "push"),
    "gitlab": ("push__branch", "Push Hook"),
    "gitea": ("push__branch", "push"),
    "generic": ("push__branch", "push"),
}


def _refusals(provider: str):
    header = SIGNATURE_HEADERS[provider]
    removed = {header: None}
    if provider == "gitea":
        removed["X-Forgejo-Signature"] = None
    bad = {**removed, header: "sha256=" + "0" * 64 if provider != "gitea" else "0" * 64}
    if provider == "gitlab":
        bad = {header: "not-the-secret"}
    return {
        "bad signature": {"headers": bad},
        "missing signature": {"headers": removed},
        "wrong secret": {"secret": "some-other-secret"},
        "unknown project": {"slug": "no-such-project"},
    }


@pytest.mark.parametrize("provider", list(SIGNATURE_HEADERS))
def test_every_refusal_gets_the_same_403(deliver, hook_project, provider):
    fixture, event = BRANCH_PUSH[provider]
    body = payload_bytes(provider, fixture)
    answers = {}
    for case, kwargs in _refusals(provider).items():
        response = deliver(provider, body, event=event, **kwargs)
        answers[case] = (response.status_code, response.content, response["Content-Type"])
    assert set(answers.values()) == {(403, json.dumps(FORBIDDEN).encode(), "application/json")}
    assert not PipelineRun.objects.exists()
    rows = WebhookDelivery.objects.all()
    assert rows.count() == 4
    assert {r.status for r in rows} == {DeliveryStatus.REJECTED}
    assert all(r.payload is None for r in rows)
    # The owner sees the attempts on the project; the one for an unknown slug names none.
    assert rows.filter(project=hook_project).count() == 3
    assert rows.filter(project__isnull=True).count() == 1


def test_a_project_without_a_secret_refuses_everything(deliver, hook_project):
    body = payload_bytes("github", "push__branch")
    hook_project.webhook_secret = ""
    hook_project.save()
    for secret in (SECRET, ""):
        response = deliver("github", body, secret=secret)
        assert response.status_code == 403
        assert response.json() == FORBIDDEN
    assert not PipelineRun.objects.exists()


def test_the_signature_covers_the_raw_bytes(deliver):
    """Re-serialising the same JSON (other spacing) breaks the signature: nothing is parsed
    before it is checked."""
    body = payload_bytes("github", "push__branch")
    signed_for = json.dumps(json.loads(body)).encode()
    from apps.webhooks.testing import sign

    headers = {"X-Hub-Signature-256": sign("github", SECRET, signed_for)["X-Hub-Signature-256"]}
    assert deliver("github", body, headers=headers).status_code == 403


def test_forgejo_signature_is_checked_first(deliver):
    body = payload_bytes("gitea", "push__branch")
    good = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    # Forgejo alone
    response = deliver("gitea", body, headers={"X-Gitea-Signature": None})
    assert response.status_code == 202
    # Gitea alone
    response = deliver(
        "gitea", body, headers={"X-Forgejo-Signature": None, "X-Gitea-Event": "push"}
    )
    assert response.status_code == 202
    # A bad Forgejo signature is not rescued by a good Gitea one.
    response = deliver(
        "gitea", body, headers={"X-Forgejo-Signature": "0" * 64, "X-Gitea-Signature": good}
    )
    assert response.status_code == 403


SIGNING_TOKEN = "whsec_" + base64.b64encode(b"k" * 32).decode()


def _gitlab_signature(body: bytes, msg_id: str, timestamp: int, key: bytes = b"k" * 32) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


#: The project's secret token for GitLab, a separate setting from its signing token.
GITLAB_TOKEN = "a-gitlab-secret-token-apart-from-the-signing-token"


@pytest.mark.parametrize(
    ("case", "configured", "status"),
    [
        ("signature only", "signing", 202),
        ("token and signature", "both", 202),
        ("bad signature", "signing", 403),
        ("good signature, bad token", "both", 403),
        ("stale timestamp", "signing", 403),
        ("several signatures, one good", "signing", 202),
        # Every credential the project set must verify, each against its own value.
        ("token only", "both", 403),
        ("signature only", "both", 403),
        ("signed with the secret token", "both", 403),
        ("token as the signing key", "signing", 403),
        # A header for a credential the project has not set is not looked at.
        ("token and signature", "token", 202),
        ("token and bad signature", "token", 202),
        ("bad token and signature", "signing", 202),
    ],
)
def test_gitlab_secret_token_and_signing_token(deliver, hook_project, case, configured, status):
    hook_project.webhook_secret = GITLAB_TOKEN if configured in ("both", "token") else ""
    hook_project.webhook_signing_token = SIGNING_TOKEN if configured in ("both", "signing") else ""
    hook_project.save()
    body = payload_bytes("gitlab", "push__branch")
    now = int(time.time())
    good = _gitlab_signature(body, "msg-1", now)
    token_key = GITLAB_TOKEN.encode()
    signature = {
        "bad signature": _gitlab_signature(body, "msg-1", now, key=b"x" * 32),
        "stale timestamp": _gitlab_signature(body, "msg-1", now - 3600),
        "several signatures, one good": f"v1,AAAA {good}",
        "token only": None,
        "signed with the secret token": _gitlab_signature(body, "msg-1", now, key=token_key),
        "token as the signing key": _gitlab_signature(body, "msg-1", now, key=token_key),
        "token and bad signature": _gitlab_signature(body, "msg-1", now, key=b"x" * 32),
    }.get(case, good)
    timestamp = now - 3600 if case == "stale timestamp" else now
    token = {
        "token and signature": GITLAB_TOKEN,
        "good signature, bad token": "nope",
        "token only": GITLAB_TOKEN,
        "signed with the secret token": GITLAB_TOKEN,
        "token as the signing key": None,
        "token and bad signature": GITLAB_TOKEN,
        "bad token and signature": "nope",
    }.get(case)
    headers = {
        "X-Gitlab-Token": token,
        "webhook-id": "msg-1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
    response = deliver("gitlab", body, secret="", headers=headers)
    assert response.status_code == status, response.content


def test_gitlab_signing_headers_from_the_sign_helper(deliver, hook_project):
    hook_project.webhook_secret = GITLAB_TOKEN
    hook_project.webhook_signing_token = SIGNING_TOKEN
    hook_project.save()
    body = payload_bytes("gitlab", "push__branch")
    response = deliver("gitlab", body, secret=GITLAB_TOKEN, signing_token=SIGNING_TOKEN)
    assert response.status_code == 202
    # Each credential against its own value: swapped, both fail.
    response = deliver("gitlab", body, secret=SIGNING_TOKEN, signing_token=GITLAB_TOKEN)
    assert response.status_code == 403
    assert WebhookDelivery.objects.filter(status="rejected").get().detail == (
        "Bad or missing signature."
    )


def test_a_gitlab_project_with_neither_credential_refuses(deliver, hook_project):
    hook_project.webhook_secret = ""
    hook_project.save()
    body = payload_bytes("gitlab", "push__branch")
    response = deliver("gitlab", body, secret="", signing_token=SIGNING_TOKEN)
    assert response.status_code == 403
    assert WebhookDelivery.objects.get().detail == "The project has no webhook secret."


def test_the_signing_token_is_set_through_the_api_and_never_shown(api, admin_user, hook_project):
    from django.urls import reverse

    url = reverse("project-detail", args=[hook_project.slug])
    client = api(admin_user)
    response = client.patch(url, {"webhook_signing_token": SIGNING_TOKEN}, format="json")
    assert response.status_code == 200, response.content
    assert "webhook_signing_token" not in response.json()
    assert SIGNING_TOKEN not in response.content.decode()
    hook_project.refresh_from_db()
    assert (hook_project.webhook_secret, hook_project.webhook_signing_token) == (
        SECRET,
        SIGNING_TOKEN,
    )


def test_get_is_not_allowed(client, hook_project):
    assert client.get(hook_url("github", hook_project.slug)).status_code == 405


def test_receivers_need_no_csrf_token_or_session(hook_project):
    from django.test import Client

    from apps.webhooks.testing import sign

    client = Client(enforce_csrf_checks=True)
    body = payload_bytes("github", "push__branch")
    response = client.post(
        hook_url("github", hook_project.slug),
        data=body,
        content_type="application/json",
        headers=sign("github", SECRET, body),
    )
    assert response.status_code == 202


# --- events -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "body", "event"),
    [
        ("github", payload_bytes("github", "ping__default"), "ping"),
        ("gitea", b"{}", "ping"),
        ("generic", b"{}", "ping"),
    ],
)
def test_ping_gets_200(deliver, provider, body, event):
    response = deliver(provider, body, event=event)
    assert response.status_code == 200
    assert response.json() == {"detail": "pong"}
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PING
    assert not PipelineRun.objects.exists()


@pytest.mark.parametrize(
    ("provider", "fixture", "event"),
    [
        ("github", "issues__opened", "issues"),
        ("gitlab", "merge_request__opened", "Merge Request Hook"),
        ("gitea", "create__branch", "create"),
    ],
)
def test_other_events_are_ignored_with_202(deliver, provider, fixture, event):
    response = deliver(provider, payload_bytes(provider, fixture), event=event)
    assert response.status_code == 202
    assert "ignored" in response.json()["detail"]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.event) == (DeliveryStatus.IGNORED, event)
    assert delivery.payload == payload(provider, fixture)
    assert not PipelineRun.objects.exists()


@pytest.mark.parametrize(
    ("provider", "event"), [("github", "push"), ("gitlab", "Push Hook")], ids=["github", "gitlab"]
)
def test_deleted_branch_is_ignored(deliver, provider, event):
    response = deliver(provider, payload_bytes(provider, "push__deleted"), event=event)
    assert response.status_code == 202
    assert response.json() == {"detail": "Branch 'feature/old-features' was deleted."}
    assert WebhookDelivery.objects.get().status == DeliveryStatus.IGNORED
    assert not PipelineRun.objects.exists()


def test_pull_request_refs_are_ignored(deliver):
    body = json.dumps({"ref": "refs/pull/7/head", "commit": "a" * 40}).encode()
    response = deliver("generic", body)
    assert response.status_code == 202
    assert not PipelineRun.objects.exists()


@pytest.mark.parametrize("provider", list(SIGNATURE_HEADERS))
@pytest.mark.parametrize("body", [b'{"ref": "refs/heads/main", ', b"[1, 2]", b"\xff\xfe", b""])
def test_malformed_json_gets_400(deliver, provider, body):
    response = deliver(provider, body, event=BRANCH_PUSH[provider][1])
    assert response.status_code == 400
    assert response.json() == {"detail": "Malformed JSON."}
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.payload) == (DeliveryStatus.INVALID, None)


def test_a_push_without_a_commit_gets_400(deliver):
    response = deliver("generic", payload_bytes("generic", "push__missing-commit"))
    assert response.status_code == 400
    assert response.json() == {"detail": "The payload names no commit."}
    assert WebhookDelivery.objects.get().status == DeliveryStatus.INVALID


def test_a_form_encoded_github_delivery_is_read(deliver):
    body = urlencode({"payload": payload_bytes("github", "push__branch").decode()}).encode()
    response = deliver("github", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 202
    assert PipelineRun.objects.get().ref == "main"


# --- size ---------------------------------------------------------------------------------


@override_settings(WEBHOOK_MAX_BODY_BYTES=1000)
def test_a_body_over_the_limit_gets_413(deliver, hook_project):
    body = json.dumps({"ref": "refs/heads/main", "commit": "a" * 40, "pad": "x" * 2000}).encode()
    response = deliver("generic", body)
    assert response.status_code == 413
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.http_status, delivery.payload) == (
        DeliveryStatus.INVALID,
        413,
        None,
    )
    assert delivery.body_size == len(body)
    assert not PipelineRun.objects.exists()


@override_settings(WEBHOOK_MAX_BODY_BYTES=1000)
def test_the_body_read_is_capped_whatever_the_length_claims(hook_project, rf):
    """A sender that claims a small Content-Length cannot make the receiver read more."""
    from apps.webhooks.views import receive

    body = b"x" * 5000
    request = rf.post(
        hook_url("generic", hook_project.slug), data=body, content_type="application/json"
    )
    request.META["CONTENT_LENGTH"] = "10"
    read = []
    original = request.read
    request.read = lambda *args: read.append(args) or original(*args)
    response = receive(request, provider="generic", slug=hook_project.slug)
    assert response.status_code == 413
    assert read == [(1001,)]


def test_a_4_mb_body_is_accepted(deliver, settings):
    assert settings.WEBHOOK_MAX_BODY_BYTES == 5 * 1024 * 1024
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE < 4 * 1024 * 1024
    data = payload("github", "push__branch")
    data["padding"] = "x" * (4 * 1024 * 1024)
    body = json.dumps(data).encode()
    response = deliver("github", body)
    assert response.status_code == 202, response.content
    assert PipelineRun.objects.count() == 1
    assert WebhookDelivery.objects.get().body_size == len(body)


# --- duplicates and forgeries --------------------------------------------------------------


@pytest.mark.parametrize("worker_between", [True, False], ids=["run-started", "run-pending"])
def test_the_same_delivery_ten_times_makes_one_run(deliver, worker_between):
    """Whether or not the worker has started the first copy's run when the others arrive."""
    body = payload_bytes("github", "push__branch")
    answers = [
        deliver("github", body, delivery_id="same-guid", start_runs=worker_between)
        for _ in range(10)
    ]
    assert [a.status_code for a in answers] == [202] * 10
    first = WebhookDelivery.objects.get(status=DeliveryStatus.ACCEPTED)
    assert answers[0].json() == {"detail": "accepted", "delivery": first.pk}
    assert [a.json() for a in answers[1:]] == [{"detail": "already received"}] * 9
    delivery_start_runs()
    assert PipelineRun.objects.count() == 1
    statuses = list(WebhookDelivery.objects.values_list("status", flat=True))
    assert sorted(statuses) == sorted(["accepted"] + ["duplicate"] * 9)


def test_without_a_delivery_id_the_body_hash_dedupes(deliver):
    body = payload_bytes("generic", "push__branch")
    for _ in range(3):
        assert deliver("generic", body, delivery_id="").status_code == 202
    assert PipelineRun.objects.count() == 1
    accepted = WebhookDelivery.objects.get(status=DeliveryStatus.ACCEPTED)
    assert accepted.delivery_id == hashlib.sha256(body).hexdigest()


def test_different_delivery_ids_make_different_runs(deliver):
    body = payload_bytes("gitea", "push__branch")
    deliver("gitea", body, delivery_id="one")
    deliver("gitea", body, delivery_id="two")
    assert PipelineRun.objects.count() == 2


def test_a_hundred_forged_deliveries_make_no_run_and_store_no_payload(deliver, hook_project):
    body = payload_bytes("github", "push__branch")
    for i in range(100):
        response = deliver("github", body, secret=f"guess-{i}", delivery_id=f"forged-{i}")
        assert response.status_code == 403
    assert not PipelineRun.objects.exists()
    rows = WebhookDelivery.objects.all()
    # The first few a minute get a row; the rest are counted per source and minute
    # (tests/security/test_bad_input.py has the details).
    counts = list(RejectedDeliveryCount.objects.all())
    assert sum(c.count for c in counts) == 100
    assert rows.count() + sum(c.not_stored for c in counts) == 100
    assert rows.count() <= 5 * len(counts) < 100
    assert not rows.filter(payload__isnull=False).exists()
    assert {r.status for r in rows} == {DeliveryStatus.REJECTED}
    # Minimal rows: a bounded subset of headers, no body.
    assert max(len(json.dumps(r.headers)) for r in rows) < 1000


def test_a_forger_cannot_claim_a_delivery_id_in_advance(deliver):
    body = payload_bytes("github", "push__branch")
    assert deliver("github", body, secret="guess", delivery_id="next-guid").status_code == 403
    assert deliver("github", body, delivery_id="next-guid").json()["detail"] == "accepted"
    assert WebhookDelivery.objects.get(status=DeliveryStatus.ACCEPTED).run.number == 1


def test_forged_headers_are_cut_to_size(deliver):
    huge = "x" * 100_000
    response = deliver(
        "github",
        b"{}",
        secret="wrong",
        headers={"X-GitHub-Event": huge, "X-GitHub-Delivery": huge, "User-Agent": huge},
    )
    assert response.status_code == 403
    row = WebhookDelivery.objects.get()
    assert len(row.event) <= 100 and len(row.delivery_id) <= 200
    assert len(json.dumps(row.headers)) < 2000


# --- branch and tag filters ----------------------------------------------------------------


def _push(ref: str, sha: str = "c" * 40) -> bytes:
    return json.dumps({"ref": ref, "commit": sha, "repository": "https://git.example/r"}).encode()


def test_branch_filter(deliver, hook_project):
    hook_project.branch_filter = "main release/*"
    hook_project.save()
    outcomes = {
        ref: deliver("generic", _push(ref)).status_code
        for ref in ("refs/heads/main", "refs/heads/release/1.0", "refs/heads/feature/x")
    }
    assert outcomes == {
        "refs/heads/main": 202,
        "refs/heads/release/1.0": 202,
        "refs/heads/feature/x": 202,
    }
    assert sorted(PipelineRun.objects.values_list("ref", flat=True)) == ["main", "release/1.0"]
    ignored = WebhookDelivery.objects.get(status=DeliveryStatus.IGNORED)
    assert ignored.ref == "refs/heads/feature/x"
    assert ignored.detail == "Branch 'feature/x' does not match the project's branch filter."


def test_tag_filter(deliver, hook_project):
    hook_project.tag_filter = "v*"
    hook_project.save()
    deliver("generic", _push("refs/tags/v1.0"))
    deliver("generic", _push("refs/tags/nightly-2026"))
    assert list(PipelineRun.objects.values_list("ref", "trigger")) == [("v1.0", Trigger.TAG)]
    assert WebhookDelivery.objects.filter(status=DeliveryStatus.IGNORED).count() == 1


def test_an_ignored_delivery_sent_again_after_the_filter_changed_is_accepted(deliver, hook_project):
    """Only accepted deliveries block their id: a Git server's own redelivery of a push that
    was filtered out starts the run once the filter lets it through."""
    hook_project.branch_filter = "release/*"
    hook_project.save()
    body = payload_bytes("github", "push__branch")
    assert deliver("github", body, delivery_id="g-1").json()["detail"].startswith("Branch")
    hook_project.branch_filter = ""
    hook_project.save()
    accepted = deliver("github", body, delivery_id="g-1").json()
    assert WebhookDelivery.objects.get(pk=accepted["delivery"]).run.number == 1
    assert deliver("github", body, delivery_id="g-1").json() == {"detail": "already received"}
    assert PipelineRun.objects.count() == 1


def test_the_run_request_error_is_recorded_and_the_payload_kept(deliver, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("apps.webhooks.outbox.run_request", boom)
    response = deliver("github", payload_bytes("github", "push__branch"))
    # The Git server was answered before the worker tried; the row tells what became of it.
    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.detail) == (DeliveryStatus.ERROR, INTERNAL_ERROR)
    assert (delivery.http_status, delivery.response_body) == (202, response.json())
    assert delivery.payload is not None and delivery.can_redeliver
    assert not delivery.awaiting_run and not PipelineRun.objects.exists()


def test_refusals_do_the_same_work_whether_or_not_the_project_exists(
    client, hook_project, monkeypatch
):
    """No timing hint: an unknown slug still costs one secret decryption and one HMAC."""
    import apps.core.fields
    import apps.webhooks.providers.github
    import apps.webhooks.verify

    work = []
    for module, name in [
        (apps.core.fields, "decrypt"),
        (apps.webhooks.verify, "decrypt"),
        (apps.webhooks.providers.github, "hmac_sha256_hex"),
    ]:
        original = getattr(module, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            work.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    from apps.webhooks.testing import sign

    body = payload_bytes("github", "push__branch")
    counts = {}
    for case, (slug, secret) in {
        "unknown": ("nope", SECRET),
        "forged": (hook_project.slug, "guess"),
    }.items():
        headers = sign("github", secret, body)
        work.clear()
        response = client.post(
            hook_url("github", slug), data=body, content_type="application/json", headers=headers
        )
        assert response.status_code == 403
        counts[case] = sorted(work)
    assert counts["unknown"] == counts["forged"] == ["decrypt", "hmac_sha256_hex"]
