"""A fake Slack (Web API + response URLs) and a webhook receiver on 127.0.0.1, each a real HTTP
server that records what arrives; the real slack-sdk and requests clients talk to them."""

import hashlib
import hmac
import itertools
import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.urls import reverse

from apps.notifications import services
from apps.notifications.models import NotificationTarget, SlackIdentity
from apps.notifications.tasks import deliver_task, dispatch_task, slack_interaction_task
from apps.releases import signals as release_signals
from apps.releases.models import Approval, Promotion
from apps.releases.services import (
    promotion_approve,
    promotion_reject,
    promotion_request,
    release_create,
)

SITE = "https://cp.example.com"
BOT_TOKEN = "xoxb-test-bot-token"  # noqa: S105 - a test value
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # noqa: S105 - a test value
CHANNEL = "C0DEPLOYS"
TEAM = "T0ACME"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.received: list[dict] = []
        self.codes: list = []  # forced answers, one per request: an int (HTTP) or a dict (JSON)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.lock = threading.Lock()


class _SlackHandler(BaseHTTPRequestHandler):
    """``/api/<method>`` answers like Slack's Web API; ``/response/…`` like a response URL."""

    def _record(self, body: bytes) -> dict:
        content_type = self.headers.get("Content-Type", "")
        parsed = urlsplit(self.path)
        if "json" in content_type:
            data = json.loads(body or b"{}")
        else:
            data = {k: v[0] for k, v in parse_qs(body.decode() or parsed.query).items()}
        request = {
            "method": self.command,
            "path": parsed.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "json": data,
        }
        with self.server.lock:
            self.server.received.append(request)
        return request

    def _answer(self, code: int, payload) -> None:
        raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header(
            "Content-Type", "application/json" if not isinstance(payload, str) else "text/plain"
        )
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = self._record(body)
        forced = self.server.codes.pop(0) if self.server.codes else None
        if isinstance(forced, int):
            self._answer(forced, {"ok": False, "error": "internal_error"})
            return
        if isinstance(forced, dict):
            self._answer(200, forced)
            return
        path, data = request["path"], request["json"]
        if path.startswith("/response/"):
            self._answer(200, "ok")
        elif path == "/api/chat.postMessage":
            ts = f"1700000000.{next(self.server.ts):06d}"
            channel = data.get("channel", "")
            self._answer(200, {"ok": True, "channel": channel, "ts": ts, "message": {"ts": ts}})
        elif path == "/api/chat.update":
            self._answer(200, {"ok": True, "channel": data.get("channel"), "ts": data.get("ts")})
        elif path == "/api/chat.postEphemeral":
            self._answer(200, {"ok": True, "message_ts": "1700000000.999999"})
        elif path == "/api/users.info":
            user = self.server.users.get(data.get("user"))
            if user is None:
                self._answer(200, {"ok": False, "error": "user_not_found"})
            else:
                self._answer(200, {"ok": True, "user": user})
        else:
            self._answer(404, {"ok": False, "error": "unknown_method"})

    do_POST = _handle  # noqa: N815 - the http.server API
    do_GET = _handle  # noqa: N815

    def log_message(self, *args):
        pass


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


def _serve(server: _Server):
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return thread


@pytest.fixture
def slack_server(settings):
    server = _Server(_SlackHandler)
    server.ts = itertools.count(100)
    server.users = {}
    _serve(server)
    settings.SLACK_API_URL = server.url + "/api/"
    settings.SLACK_BOT_TOKEN = BOT_TOKEN
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def hook_server():
    server = _Server(_HookHandler)
    _serve(server)
    yield server
    server.shutdown()
    server.server_close()


def api_calls(server, method: str) -> list[dict]:
    return [r for r in server.received if r["path"] == f"/api/{method}"]


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
    def decide(promotion, user, decision="approve"):
        before = _state(promotion)
        with sent_signals() as log, after_commit():
            if decision == "approve":
                promotion = promotion_approve(promotion=promotion, user=user, channel="web")
            else:
                promotion = promotion_reject(
                    promotion=promotion, user=user, comment="Not this one.", channel="web"
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
