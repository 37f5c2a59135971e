"""Commit statuses sent back to the Git server, checked by a real HTTP server on 127.0.0.1 that
records what arrives."""

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.pipelines.choices import RunStatus
from apps.pipelines.models import PipelineRun
from apps.pipelines.signals import run_status_changed
from apps.webhooks.commit_status import commit_status_report
from apps.webhooks.models import CommitStatusReport
from apps.webhooks.tasks import report_commit_status_task
from tests.factories import RunFactory

from .conftest import payload_bytes

pytestmark = pytest.mark.django_db

TOKEN = "tok-3f9a1c-never-show-me"
SHA = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
SITE = "https://cp.example.com"


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "json": json.loads(body or b"null"),
            }
        )
        code = self.server.codes.pop(0) if self.server.codes else 201
        # A careless server echoes the credential; it must not reach our logs or rows.
        answer = json.dumps({"message": f"status {code} for {self.headers.get('Authorization')}"})
        self.send_response(code)
        if 300 <= code < 400:
            self.send_header("Location", "/somewhere-else")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def git_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.received = []
    server.codes = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def configure(hook_project, git_server, settings):
    settings.SITE_URL = SITE

    def set_up(provider: str, api_path: str, repository: str):
        hook_project.git_provider = provider
        hook_project.git_api_url = git_server.url + api_path
        hook_project.git_repository = repository
        hook_project.git_api_token = TOKEN
        hook_project.save()
        return hook_project

    return set_up


def _run(project, status=RunStatus.RUNNING, number=1) -> PipelineRun:
    return RunFactory(project=project, number=number, status=status, commit_sha=SHA)


PROVIDERS = [
    (
        "github",
        "/api/v3",
        "acme/churn-model",
        f"/api/v3/repos/acme/churn-model/statuses/{SHA}",
        {"authorization": f"Bearer {TOKEN}", "accept": "application/vnd.github+json"},
        {"state": "pending", "context": "controlplane/pipeline"},
    ),
    (
        "gitlab",
        "/api/v4",
        "ml/models/churn-model",
        f"/api/v4/projects/ml%2Fmodels%2Fchurn-model/statuses/{SHA}",
        {"private-token": TOKEN},
        {"state": "running", "name": "controlplane/pipeline", "ref": "main"},
    ),
    (
        "gitea",
        "/api/v1",
        "ml/churn-model",
        f"/api/v1/repos/ml/churn-model/statuses/{SHA}",
        {"authorization": f"token {TOKEN}"},
        {"state": "pending", "context": "controlplane/pipeline"},
    ),
]


@pytest.mark.parametrize(
    ("provider", "api_path", "repository", "path", "headers", "fields"),
    PROVIDERS,
    ids=[p[0] for p in PROVIDERS],
)
def test_the_status_request_each_server_gets(
    configure, git_server, provider, api_path, repository, path, headers, fields
):
    run = _run(configure(provider, api_path, repository))
    report = commit_status_report(run_id=run.pk)

    [request] = git_server.received
    assert (request["method"], request["path"]) == ("POST", path)
    for name, value in headers.items():
        assert request["headers"][name] == value
    assert request["headers"]["content-type"] == "application/json"
    assert request["json"] == {
        **fields,
        "target_url": f"{SITE}{run.get_absolute_url()}",
        "description": "Pipeline #1 running",
    }
    assert (report.state, report.run_status, report.http_status) == (
        fields["state"],
        "running",
        201,
    )
    assert report.reported_at is not None and report.error_message == ""


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("github", ["pending", "pending", "success", "failure", "error"]),
        ("gitlab", ["pending", "running", "success", "failed", "canceled"]),
        ("gitea", ["pending", "pending", "success", "failure", "error"]),
    ],
)
def test_run_statuses_map_to_each_servers_states(configure, git_server, provider, expected):
    project = configure(provider, "/api", "o/r")
    states = []
    for status in ("queued", "running", "succeeded", "failed", "canceled"):
        run = _run(project, status=status, number=len(states) + 1)
        commit_status_report(run_id=run.pk)
        states.append(git_server.received[-1]["json"]["state"])
    assert states == expected


def test_the_current_status_is_reported_once(configure, git_server):
    run = _run(configure("github", "", "acme/churn-model"))
    commit_status_report(run_id=run.pk)
    commit_status_report(run_id=run.pk)  # a duplicate message
    assert len(git_server.received) == 1
    PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    commit_status_report(run_id=run.pk)
    assert [r["json"]["state"] for r in git_server.received] == ["pending", "success"]
    report = CommitStatusReport.objects.get(run=run)
    assert (report.state, report.run_status) == ("success", "succeeded")


def test_nothing_is_sent_without_the_full_configuration(configure, git_server):
    project = configure("github", "", "acme/churn-model")
    project.git_api_token = ""
    project.save()
    assert commit_status_report(run_id=_run(project).pk) is None
    project.git_api_token = TOKEN
    project.git_provider = "generic"
    project.save()
    assert commit_status_report(run_id=_run(project, number=2).pk) is None
    assert git_server.received == []


# --- failures -------------------------------------------------------------------------------


def test_a_500_is_retried(configure, git_server):
    run = _run(configure("github", "", "acme/churn-model"))
    git_server.codes = [500] * 10
    result = report_commit_status_task.apply(args=[run.pk])
    assert result.failed()
    assert len(git_server.received) == 1 + 5  # the first try and max_retries
    report = CommitStatusReport.objects.get(run=run)
    assert (report.attempts, report.http_status, report.reported_at) == (6, 500, None)


def test_a_503_then_success(configure, git_server):
    run = _run(configure("gitea", "/api/v1", "ml/churn-model"))
    git_server.codes = [503]
    result = report_commit_status_task.apply(args=[run.pk])
    assert result.successful()
    assert len(git_server.received) == 2
    report = CommitStatusReport.objects.get(run=run)
    assert (report.http_status, report.error_message) == (201, "")
    assert report.reported_at is not None


def test_a_401_is_final_and_the_token_is_never_logged_or_kept(configure, git_server, caplog):
    run = _run(configure("github", "", "acme/churn-model"))
    git_server.codes = [401]
    with caplog.at_level(logging.DEBUG):
        result = report_commit_status_task.apply(args=[run.pk])
    assert result.successful()
    assert len(git_server.received) == 1
    report = CommitStatusReport.objects.get(run=run)
    assert report.http_status == 401 and report.reported_at is None
    assert "HTTP 401" in report.error_message and "********" in report.error_message
    stored = json.dumps(list(CommitStatusReport.objects.values()), default=str)
    assert TOKEN not in stored
    assert TOKEN not in caplog.text
    assert "refused by the Git server" in caplog.text


def test_a_redirect_is_not_followed_with_the_token(configure, git_server):
    run = _run(configure("gitlab", "/api/v4", "ml/churn-model"))
    git_server.codes = [302]
    report_commit_status_task.apply(args=[run.pk])
    assert [r["path"] for r in git_server.received] == [
        f"/api/v4/projects/ml%2Fchurn-model/statuses/{SHA}"
    ]
    assert CommitStatusReport.objects.get(run=run).http_status == 302


def test_an_unreachable_server_is_retried(configure, git_server):
    project = configure("github", "", "acme/churn-model")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    project.git_api_url = f"http://127.0.0.1:{port}"
    project.save()
    run = _run(project)
    result = report_commit_status_task.apply(args=[run.pk])
    assert result.failed()
    report = CommitStatusReport.objects.get(run=run)
    assert report.attempts == 6 and "ConnectionError" in report.error_message


def test_the_task_is_named_and_queued_as_documented():
    assert report_commit_status_task.name == "webhooks.report_commit_status"
    assert report_commit_status_task.queue == "default"
    assert report_commit_status_task.max_retries == 5


# --- when it is sent ------------------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(report_commit_status_task, "delay", lambda run_id: calls.append(run_id))
    return calls


def test_a_run_status_change_enqueues_a_report_after_commit(
    configure, sent, django_capture_on_commit_callbacks
):
    run = _run(configure("github", "", "acme/churn-model"))
    with django_capture_on_commit_callbacks(execute=True):
        run_status_changed.send(
            sender=PipelineRun, run=run, from_status="queued", to_status="running"
        )
        assert sent == []  # not before the commit
    assert sent == [run.pk]


def test_no_report_for_unconfigured_projects_or_runs_without_a_commit(
    configure, sent, hook_project, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = _run(hook_project)  # no API settings yet
        run_status_changed.send(sender=PipelineRun, run=run, from_status="", to_status="running")
        configure("github", "", "acme/churn-model")
        manual = RunFactory(project=hook_project, number=2, commit_sha="")
        run_status_changed.send(sender=PipelineRun, run=manual, from_status="", to_status="running")
    assert sent == []


def test_an_accepted_push_reports_pending_with_a_link_to_the_run(
    configure, git_server, deliver, monkeypatch, django_capture_on_commit_callbacks
):
    configure("github", "", "acme/churn-model")
    monkeypatch.setattr(
        report_commit_status_task, "delay", lambda run_id: commit_status_report(run_id=run_id)
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver("github", payload_bytes("github", "push__branch"))
    assert response.status_code == 202
    # The first report; the outbox worker then prepares the run itself, and this project has
    # no repository, so a second report says the run failed.
    request = git_server.received[0]
    run = PipelineRun.objects.get()
    assert request["path"] == f"/repos/acme/churn-model/statuses/{SHA}"
    assert request["json"]["state"] == "pending"
    assert request["json"]["target_url"] == SITE + run.get_absolute_url()
    assert request["json"]["description"] == "Pipeline #1 queued"
