"""A fake Slack (Web API + response URLs) and a webhook receiver on 127.0.0.1, each a real HTTP
server that records what arrives; the real slack-sdk and requests clients talk to them."""

import hashlib
import hmac
import json
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from apps.notifications import services
from apps.notifications.models import NotificationTarget, SlackIdentity
from apps.notifications.tasks import deliver_task, dispatch_task, slack_interaction_task
from apps.releases import services as release_services
from apps.releases import signals as release_signals
from apps.releases.models import Approval, Promotion
from apps.releases.services import promotion_request, release_create

from .fakeslack import Server, api_calls, serve, start_slack, stop  # noqa: F401 - api_calls

SITE = "https://cp.example.com"
BOT_TOKEN = "xoxb-test-bot-token"  # noqa: S105 - a test value
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # noqa: S105 - a test value
CHANNEL = "C0DEPLOYS"
HOOK_SECRET = "whsec-a-long-random-secret-for-the-tests"  # noqa: S105 - a test value
TEAM = "T0ACME"


class _HookHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.received.append(
                {
                    "path": self.path,
                    "headers": {k: v for k, v in self.headers.items()},
                    "body": body,
                }
            )
        code = self.server.codes.pop(0) if self.server.codes else 204
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"no")

    def log_message(self, *args):
        pass


@pytest.fixture
def slack_server(settings):
    server = start_slack()
    settings.SLACK_API_URL = server.url + "/api/"
    settings.SLACK_BOT_TOKEN = BOT_TOKEN
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    yield server
    stop(server)


@pytest.fixture
def hook_server():
    server = Server(_HookHandler)
    serve(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def webhook_target(project, hook_server):
    return NotificationTarget.objects.create(
        project=project,
        kind="webhook",
        destination=hook_server.url + "/cp-events",
        secret=HOOK_SECRET,
    )


@pytest.fixture(autouse=True)
def _site(settings):
    settings.SITE_URL = SITE


@pytest.fixture
def deploys_queued(monkeypatch):
    """Deployments an approval queued (not run here: deploying is the releases app's test)."""
    from apps.releases.tasks import run_deployment_task

    queued: list[int] = []
    monkeypatch.setattr(run_deployment_task, "delay", lambda pk: queued.append(pk))
    return queued


@pytest.fixture
def run_tasks(monkeypatch, deploys_queued):
    """Our tasks run in the test's thread as a worker would run them (``Task.apply``, retries
    included) when they are sent."""
    for task in (dispatch_task, deliver_task, slack_interaction_task):
        monkeypatch.setattr(task, "delay", lambda *args, _task=task: _task.apply(args=args))


@pytest.fixture
def after_commit(django_capture_on_commit_callbacks, run_tasks):
    """``with after_commit(): …`` runs what was deferred to the commit, and the tasks sent."""

    @contextmanager
    def block():
        with django_capture_on_commit_callbacks(execute=True):
            yield

    return block


# --- the releases side ------------------------------------------------------------------------


@pytest.fixture
def production(project):
    return project.environments.get(name="production")


@pytest.fixture
def release(project, admin_user):
    return release_create(project=project, version="v3", commit_sha="abc1234def", actor=admin_user)


@pytest.fixture
def slack_target(project, admin_user):
    return NotificationTarget.objects.create(
        project=project, kind="slack", destination=CHANNEL, name="deploys", created_by=admin_user
    )


@contextmanager
def sent_signals():
    """Records the releases signals sent inside the block."""
    log: list[tuple[str, dict]] = []
    receivers = {}
    for name in (
        "promotion_status_changed",
        "approval_recorded",
        "deployment_status_changed",
        "promotion_reminder",
    ):

        def record(sender, _name=name, **kwargs):
            log.append((_name, kwargs))

        receivers[name] = record
        getattr(release_signals, name).connect(record, weak=False)
    try:
        yield log
    finally:
        for name, receiver in receivers.items():
            getattr(release_signals, name).disconnect(receiver)


def _sent(log, name: str, **match) -> bool:
    return any(
        n == name and all(getattr(kw.get(k), "pk", kw.get(k)) == v for k, v in match.items())
        for n, kw in log
    )


def _state(promotion: Promotion) -> tuple[str, set[int]]:
    return (
        Promotion.objects.get(pk=promotion.pk).status,
        set(Approval.objects.filter(promotion=promotion).values_list("pk", flat=True)),
    )


def send_missing_promotion_signals(log, promotion: Promotion, before) -> None:
    """The releases app is being wired to send its signals; until it does (or where it does
    not yet), send what its service would have sent — never twice."""
    from_status, known = before
    promotion.refresh_from_db()
    for approval in Approval.objects.filter(promotion=promotion).exclude(pk__in=known):
        if not _sent(log, "approval_recorded", approval=approval.pk):
            release_signals.approval_recorded.send(sender=Approval, approval=approval)
    if promotion.status != from_status and not _sent(
        log, "promotion_status_changed", promotion=promotion.pk
    ):
        release_signals.promotion_status_changed.send(
            sender=Promotion,
            promotion=promotion,
            from_status=from_status,
            to_status=promotion.status,
        )


@pytest.fixture
def request_promotion(after_commit, admin_user):
    """request_promotion(release, environment) → a pending promotion, its "pending" signal
    sent and notified (as the real service does, or will)."""

    def make(release, environment, actor=None):
        with sent_signals() as log, after_commit():
            promotion = promotion_request(
                release=release, environment=environment, actor=actor or admin_user
            )
        if not _sent(log, "promotion_status_changed", promotion=promotion.pk):
            with after_commit():
                release_signals.promotion_status_changed.send(
                    sender=Promotion, promotion=promotion, from_status=None, to_status="pending"
                )
        return promotion

    return make


@pytest.fixture
def decide_in_browser(after_commit):
    def decide(promotion, user, decision="approve", comment="Not this one."):
        before = _state(promotion)
        with sent_signals() as log, after_commit():
            if decision == "reject":
                promotion = release_services.promotion_reject(
                    promotion=promotion, user=user, comment=comment, channel="web"
                )
            else:
                promotion = release_services.promotion_approve(
                    promotion=promotion, user=user, channel="web"
                )
        with after_commit():
            send_missing_promotion_signals(log, promotion, before)
        return promotion

    return decide


# --- Slack interactions -----------------------------------------------------------------------


def slack_link(user, slack_user_id: str, team_id: str = TEAM) -> SlackIdentity:
    return services.slack_identity_link(user=user, slack_user_id=slack_user_id, team_id=team_id)


def block_actions(promotion_id, slack_user_id: str, *, action="promotion_approve", response_url):
    return {
        "type": "block_actions",
        "user": {"id": slack_user_id, "username": slack_user_id.lower(), "team_id": TEAM},
        "team": {"id": TEAM, "domain": "acme"},
        "api_app_id": "A0CONTROLPLANE",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": CHANNEL},
        "channel": {"id": CHANNEL, "name": "deploys"},
        "response_url": response_url,
        "trigger_id": "1.2.3",
        "actions": [
            {
                "type": "button",
                "action_id": action,
                "block_id": "promotion_actions",
                "value": str(promotion_id),
                "action_ts": "1700000001.000000",
            }
        ],
    }


def view_submission(view: dict, slack_user_id: str, reason: str) -> dict:
    """What Slack posts when the modal ``view`` (as our code opened it) is submitted with
    ``reason`` typed into its one input."""
    [field] = [b for b in view["blocks"] if b["type"] == "input"]
    return {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": slack_user_id, "username": slack_user_id.lower(), "team_id": TEAM},
        "api_app_id": "A0CONTROLPLANE",
        "trigger_id": "4.5.6",
        "view": {
            **view,
            "id": "V0MODAL",
            "state": {
                "values": {
                    field["block_id"]: {
                        field["element"]["action_id"]: {
                            "type": "plain_text_input",
                            "value": reason,
                        }
                    }
                }
            },
        },
    }


def slack_signed(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict:
    """The headers Slack sends (https://api.slack.com/authentication/verifying-requests-from-slack),
    computed here independently of slack-sdk."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


@pytest.fixture
def click(client, after_commit, slack_server):
    """click(promotion, slack_user_id, action=…, headers=…) → the endpoint's response, after
    the worker handled it (and the releases signals it caused were notified)."""

    def send(promotion, slack_user_id, *, action="promotion_approve", headers=None, payload=None):
        payload = payload or block_actions(
            promotion.pk,
            slack_user_id,
            action=action,
            response_url=f"{slack_server.url}/response/{TEAM}/{promotion.pk}/abc",
        )
        body = urlencode({"payload": json.dumps(payload)})
        before = _state(promotion)
        with sent_signals() as log, after_commit():
            response = client.post(
                reverse("notifications:slack-interactions"),
                data=body,
                content_type="application/x-www-form-urlencoded",
                headers=slack_signed(body) if headers is None else headers,
            )
        with after_commit():
            send_missing_promotion_signals(log, promotion, before)
        return response

    return send


def ephemeral_replies(server) -> list[dict]:
    return [r["json"] for r in server.received if r["path"].startswith("/response/")]
