"""The UI shell: login, dashboard matrix, project page, run and job pages, system page."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from apps.pipelines.models import Job, PipelineRun
from apps.projects.models import Project

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(django_capture_on_commit_callbacks, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    with django_capture_on_commit_callbacks(execute=False):
        call_command("setup_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    return Project.objects.get(slug="demo-churn-model")


def test_login_with_printed_credentials(client, demo, settings):
    password = (settings.VAR_DIR / "demo-admin-password.txt").read_text().strip()
    response = client.post(reverse("login"), {"username": "admin", "password": password})
    assert response.status_code == 302
    page = client.get(reverse("dashboard")).content.decode()
    assert "Demo churn model" in page


def test_wrong_password_is_refused(client, demo):
    response = client.post(reverse("login"), {"username": "admin", "password": "nope"})
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()


@pytest.fixture
def history(demo):
    """v1 serves production; v2 serves dev and staging and waits for approval to production."""
    from datetime import timedelta

    from django.utils import timezone

    from apps.releases.choices import DeploymentStatus
    from apps.releases.models import Deployment
    from apps.releases.services import promotion_request, release_create

    envs = {e.name: e for e in demo.environments.all()}
    now = timezone.now()
    for version, targets in (("v1", envs), ("v2", ("dev", "staging"))):
        release = release_create(
            project=demo, version=version, commit_sha=f"{version}abc", actor=demo.created_by
        )
        for name in targets:
            Deployment.objects.create(
                release=release,
                environment=envs[name],
                status=DeploymentStatus.SUCCEEDED,
                started_at=now - timedelta(minutes=5),
                finished_at=now - timedelta(minutes=4),
            )
    return promotion_request(release=release, environment=envs["production"], actor="pipeline")


def test_dashboard_matrix_shows_what_runs_where(client, demo, history):
    client.force_login(demo.created_by)
    page = client.get(reverse("dashboard")).content.decode()
    # v1 serves production; v2 serves dev and staging and waits for approval to production.
    assert page.count(">v2<") >= 2
    assert ">v1<" in page
    assert "v2 waiting" in page
    assert "Waiting for approval" in page


def test_viewer_sees_project_but_not_secret_values(client, demo):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="viewer"))
    page = client.get(demo.get_absolute_url()).content.decode()
    assert "staging" in page and "production" in page
    assert "DEMO_API_KEY" in page
    assert "s3cr3t-demo-key" not in page
    assert (
        "Cancel run"
        not in client.get(PipelineRun.objects.get().get_absolute_url()).content.decode()
    )


def test_outsider_gets_404_on_project_pages(client, demo):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="outsider"))
    assert client.get(demo.get_absolute_url()).status_code == 404
    assert client.get(PipelineRun.objects.get().get_absolute_url()).status_code == 404
    assert "Demo churn model" not in client.get(reverse("dashboard")).content.decode()


def test_run_and_job_pages_and_log_tail(client, demo, settings):
    from apps.pipelines.logs import log_path
    from apps.pipelines.services import run_create

    client.force_login(demo.created_by)
    run = run_create(
        project=demo,
        actor=demo.created_by,
        jobs=[
            {"name": "lint", "script": ["true"]},
            {"name": "unit-tests", "needs": ["lint"], "script": ["true"]},
        ],
    )
    assert client.get(reverse("history")).status_code == 200
    page = client.get(run.get_absolute_url()).content.decode()
    assert "unit-tests" in page and 'hx-trigger="every 1s"' in page
    assert "needs lint" in page  # the graph: unit-tests sits in the column after lint
    job = Job.objects.get(name="lint")
    path = log_path(job.pk, job.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"line one <b>\n\x1b[1;32mgreen\x1b[0m\n")
    page = client.get(job.get_absolute_url()).content.decode()
    assert "line one &lt;b&gt;" in page  # escaped, never markup
    assert '<span class="ansi-bold ansi-fg-2">green</span>' in page or "ansi-fg-2" in page
    tail = client.get(
        reverse("pipelines:job-tail", args=[demo.slug, run.number, job.name]), {"offset": 9}
    ).content.decode()
    assert "line one" not in tail and "green" in tail
    download = client.get(reverse("pipelines:job-log", args=[demo.slug, run.number, job.name]))
    assert b"".join(download.streaming_content) == path.read_bytes()


def test_history_filters(client, demo):
    client.force_login(demo.created_by)
    assert (
        "demo-churn-model #1"
        in client.get(reverse("history"), {"status": "queued"}).content.decode()
    )
    assert (
        "demo-churn-model #1"
        not in client.get(reverse("history"), {"status": "failed"}).content.decode()
    )


def test_system_page_pings_a_worker(client, demo, django_capture_on_commit_callbacks):
    from apps.core.models import WorkerPing

    client.force_login(demo.created_by)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client.post(reverse("system-ping"))
    assert WorkerPing.objects.count() == 1 and len(callbacks) == 1
    assert "waiting" in client.get(reverse("system")).content.decode()


def test_approver_approves_in_the_browser(client, demo, history):
    from django.contrib.auth import get_user_model

    from apps.releases.models import Promotion

    promotion = Promotion.objects.get()
    client.force_login(get_user_model().objects.get(username="lead"))
    page = client.get(promotion.get_absolute_url()).content.decode()
    assert 'value="approve"' in page
    client.post(
        reverse("releases:decide", args=[demo.slug, promotion.pk]),
        {"decision": "approve", "comment": "ship it"},
    )
    promotion.refresh_from_db()
    assert promotion.status == "deploying"  # approved, and its deployment requested
    assert promotion.deployment is not None
