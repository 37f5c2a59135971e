"""Starting named pipelines through the API and the pipelines page: 201 with the run, 400
naming the parameter and no run, who may; the page's parameter form, schedules with their next
fire times, pause and resume."""

import pytest
from django.test import Client

from apps.pipelines import schedules, services
from apps.pipelines.choices import Trigger
from apps.pipelines.commits import Commit
from apps.pipelines.models import PipelineRun, Schedule
from apps.pipelines.specs import spec_at

from .ctrepo import ct_repo

pytestmark = pytest.mark.django_db


@pytest.fixture
def git_project(project, tmp_path):
    paris = 'paris:\n  pipeline: features\n  cron: "30 6 * * 1-5"\n  timezone: Europe/Paris\n'
    repo = ct_repo(tmp_path, schedules=paris)
    project.repository_url = repo.url
    project.save()
    return project


def url(project, name="features"):
    return f"/api/v1/projects/{project.slug}/pipelines/{name}/runs/"


def test_api_starts_a_run_with_typed_params(git_project, member, api):
    client = api(member("developer"))
    response = client.post(
        url(git_project),
        {"params": {"rows": 42, "full": True}, "environment": "dev"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["pipeline"] == "features" and body["trigger"] == Trigger.API
    assert body["params"] == {"rows": 42, "region": "eu", "full": True}
    assert body["environment"] == "dev"
    assert body["trigger_detail"] == "by developer-user through the API"
    assert PipelineRun.objects.get(pk=body["id"]).params["rows"] == 42
    # The project's numeric id works as well as its slug.
    response = client.post(
        f"/api/v1/projects/{git_project.pk}/pipelines/features/runs/", {}, format="json"
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("params", "name"), [({"rows": 1000}, "rows"), ({"region": "mars"}, "region"), ({"x": 1}, "x")]
)
def test_api_refuses_a_bad_parameter_naming_it_and_creates_no_run(
    git_project, member, api, params, name
):
    response = api(member("developer")).post(url(git_project), {"params": params}, format="json")
    assert response.status_code == 400
    errors = response.json()["params"]
    assert list(errors) == [name] and errors[name][0]
    assert not PipelineRun.objects.exists()


def test_api_who_may_start(git_project, member, api, admin_user):
    assert api(member("viewer")).post(url(git_project), {}, format="json").status_code == 403
    assert api().post(url(git_project), {}, format="json").status_code in (401, 403)
    from tests.factories import UserFactory

    stranger = UserFactory(username="stranger")
    assert api(stranger).post(url(git_project), {}, format="json").status_code == 404
    response = api(admin_user).post(url(git_project, "nope"), {}, format="json")
    assert response.status_code == 404 and "No pipeline 'nope'" in response.json()["detail"]
    response = api(admin_user).post(url(git_project), {"environment": "mars"}, format="json")
    assert response.status_code == 400 and "environment" in response.json()
    assert not PipelineRun.objects.exists()


def test_api_skip_answers_that_nothing_started(git_project, admin_user, api):
    client = api(admin_user)
    assert client.post(url(git_project, "solo"), {}, format="json").status_code == 201
    response = client.post(url(git_project, "solo"), {}, format="json")
    assert response.status_code == 200 and response.json()["run"] is None
    assert PipelineRun.objects.filter(pipeline="solo").count() == 1


@pytest.fixture
def synced(git_project, admin_user, django_capture_on_commit_callbacks):
    """A prepared run of the default branch: its spec is what the page shows."""
    run = services.run_request(
        project=git_project, actor=admin_user, commit=Commit(ref="main"), send_prepare=False
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.run_prepare(run_id=run.pk)
    return git_project


def test_pipelines_page_shows_forms_schedules_and_runs(synced, member):
    client = Client()
    client.force_login(member("developer"))
    page = client.get(f"/p/{synced.slug}/pipelines/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="pipeline-features"' in html and 'id="pipeline-push"' in html
    assert 'type="number" name="param-rows" value="5" min="1" max="100"' in html
    assert '<select name="param-region"><option value="eu" selected>eu</option>' in html
    assert 'type="checkbox" name="param-full" value="true"' in html
    paris = Schedule.objects.get(name="paris")
    assert f'id="schedule-{paris.pk}"' in html
    assert html.count("06:30:00 CET") == 5  # the next five fire times, in Paris time
    assert "Pause" in html
    # The form starts a run with the typed values (an unchecked box is false).
    response = client.post(
        f"/p/{synced.slug}/pipelines/features/run/",
        {"param-rows": "12", "param-region": "us", "param-full": "false"},
    )
    run = PipelineRun.objects.get(pipeline="features")
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    assert run.params == {"rows": 12, "region": "us", "full": False}
    assert run.trigger == Trigger.MANUAL and "pipelines page" in run.trigger_detail
    html = client.get(f"/p/{synced.slug}/pipelines/").content.decode()
    assert all(f"{pair}" in html for pair in ("rows=12", "region=us", "full=False"))


def test_pipelines_page_names_a_bad_parameter(synced, member):
    client = Client()
    client.force_login(member("developer"))
    response = client.post(f"/p/{synced.slug}/pipelines/features/run/", {"param-rows": "0"})
    assert response.status_code == 400
    assert (
        'Parameter <strong class="mono">rows</strong>: must be &gt;= 1' in response.content.decode()
    )
    assert not PipelineRun.objects.filter(pipeline="features").exists()


def test_pause_and_resume_from_the_page(synced, member):
    client = Client()
    client.force_login(member("developer"))
    paris = Schedule.objects.get(name="paris")
    path = f"/p/{synced.slug}/schedules/{paris.pk}/pause/"
    row = client.post(path, {"paused": "1"}, headers={"HX-Request": "true"}).content.decode()
    paris.refresh_from_db()
    assert paris.paused and not paris.periodic_task.enabled
    assert row.startswith(f'<tr id="schedule-{paris.pk}">') and "Resume" in row
    client.post(path, {"paused": "0"})
    paris.refresh_from_db()
    assert not paris.paused and paris.periodic_task.enabled
    viewer = Client()
    viewer.force_login(member("viewer"))
    viewer.post(path, {"paused": "1"})
    paris.refresh_from_db()
    assert not paris.paused  # a viewer may not
    assert "Pause" not in viewer.get(f"/p/{synced.slug}/pipelines/").content.decode()


def test_schedules_helper_is_importable_for_the_page(synced):
    info, spec = spec_at(synced)
    assert schedules.schedules_sync(project=synced, spec=spec, commit_sha=info["sha"])
