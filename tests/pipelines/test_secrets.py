"""Who sees a secret: protected variables reach only runs of protected refs whose commit is on
that ref, and deployments; an environment's variables reach only that environment; inline
jobs need the admin role and never get protected variables; logs mask encoded forms too.

Jobs run in the real executor (in-process, as a worker does) on a real Git repository; each
job writes what it was given to an artifact (the log would mask it)."""

import base64

import pytest
from django.test import override_settings
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.pipelines import services
from apps.pipelines.choices import JobStatus, RunStatus, Trigger
from apps.pipelines.commits import Commit
from apps.pipelines.executor import execute_job
from apps.pipelines.logs import MASK, LogWriter, log_path
from apps.pipelines.models import PipelineRun
from apps.projects.selectors import job_variables
from apps.projects.services import project_update, variable_set

from .gitrepo import Repo, _git

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = """version: 1
jobs:
  show:
    kind: script
    retries: 0
    script:
      - mkdir -p out
      - >-
        echo "plain=${PLAIN:-absent} key=${DEPLOY_KEY:-absent} env=${ENV_ONLY:-absent}"
        > out/seen.txt
    artifacts: [out/seen.txt]
"""
INLINE = [{"name": "show", "retries": 0, "script": ["echo hello"]}]


@pytest.fixture
def repo(tmp_path, project, admin_user):
    src = tmp_path / "tree"
    src.mkdir()
    (src / ".controlplane.yml").write_text(SPEC)
    repo = Repo(tmp_path / "git", source=src)
    project_update(project=project, repository_url=repo.url, actor=admin_user)
    variable_set(project=project, key="PLAIN", value="hello", actor=admin_user)
    variable_set(
        project=project,
        key="DEPLOY_KEY",
        value="s3cr3t-deploy-key",
        is_secret=True,
        protected=True,
        actor=admin_user,
    )
    return repo


def feature_commit(repo) -> str:
    """A commit pushed to a feature branch only (main does not have it)."""
    _git("checkout", "-q", "-b", "feature", cwd=repo.work)
    (repo.work / "x.txt").write_text("feature\n")
    _git("add", "-A", cwd=repo.work)
    _git("commit", "-q", "-m", "feature work", cwd=repo.work)
    _git("push", "-q", "origin", "feature", cwd=repo.work)
    sha = _git("rev-parse", "HEAD", cwd=repo.work)
    _git("checkout", "-q", "main", cwd=repo.work)
    return sha


def run_of(project, commit: Commit, trigger=Trigger.API, **fields) -> PipelineRun:
    run = services.run_request(
        project=project,
        actor="test",
        commit=commit,
        trigger=trigger,
        send_prepare=False,
        fields=fields,
    )
    run = services.run_prepare(run_id=run.pk)
    return execute(run)


def execute(run: PipelineRun) -> PipelineRun:
    while job := run.jobs.filter(status=JobStatus.QUEUED).order_by("id").first():
        execute_job(services.job_claim(job_id=job.pk, worker="test-worker"))
    run = PipelineRun.objects.get(pk=run.pk)
    jobs = [(j.name, j.status, j.error_message) for j in run.jobs.all()]
    assert run.status == RunStatus.SUCCEEDED, (run.error_message, jobs)
    return run


def seen(run: PipelineRun) -> str:
    artifact = run.jobs.get(name="show").artifacts.get(path="out/seen.txt")
    return artifact.file_path.read_text().strip()


def test_a_run_of_the_default_branch_gets_protected_variables(project, repo, client, admin_user):
    run = run_of(project, Commit(ref="main"))
    assert run.protected is True
    client.force_login(admin_user)
    assert ">protected</span>" in client.get(run.get_absolute_url()).content.decode()
    assert seen(run) == "plain=hello key=s3cr3t-deploy-key env=absent"
    job = run.jobs.get()
    assert "s3cr3t" not in log_path(job.pk, job.run_id).read_text()


def test_a_feature_branch_run_does_not_get_protected_variables(project, repo):
    sha = feature_commit(repo)
    run = run_of(project, Commit(ref="feature", sha=sha), trigger=Trigger.PUSH)
    assert run.protected is False
    assert seen(run) == "plain=hello key=absent env=absent"


def test_naming_main_does_not_protect_a_feature_commit(project, repo):
    """The sha and the ref of a manual run are both the caller's: a commit that is not on
    main is not a run of main, whatever the run says."""
    sha = feature_commit(repo)
    run = run_of(project, Commit(ref="main", sha=sha))
    assert run.protected is False
    assert seen(run) == "plain=hello key=absent env=absent"


def test_a_feature_commit_merged_into_main_is_protected_on_main(project, repo):
    """The mirror already holds the commit (its feature-branch run fetched it) but not yet
    main's new head: the worker fetches once more before it says no."""
    sha = feature_commit(repo)
    assert run_of(project, Commit(ref="feature", sha=sha), trigger=Trigger.PUSH).protected is False
    _git("merge", "-q", "--ff-only", "feature", cwd=repo.work)
    _git("push", "-q", "origin", "main", cwd=repo.work)
    run = run_of(project, Commit(ref="main", sha=sha), trigger=Trigger.PUSH)
    assert run.protected is True
    assert "key=s3cr3t-deploy-key" in seen(run)


def test_protected_refs_patterns_replace_the_default(project, repo, admin_user):
    feature_commit(repo)
    project_update(project=project, protected_refs="feat*", actor=admin_user)
    assert (
        seen(run_of(project, Commit(ref="feature")))
        == "plain=hello key=s3cr3t-deploy-key env=absent"
    )
    assert seen(run_of(project, Commit(ref="main"))) == "plain=hello key=absent env=absent"


def test_environment_variables_reach_only_that_environments_runs(project, repo, admin_user):
    staging = project.environments.get(name="staging")
    variable_set(
        project=project, environment=staging, key="ENV_ONLY", value="stage-db", actor=admin_user
    )
    assert seen(run_of(project, Commit(ref="main"))).endswith("env=absent")
    assert seen(run_of(project, Commit(ref="main"), environment=staging)).endswith("env=stage-db")
    dev = project.environments.get(name="dev")
    assert seen(run_of(project, Commit(ref="main"), environment=dev)).endswith("env=absent")


def test_a_protected_environment_value_does_not_fall_back_to_the_project_wide_one(
    project, admin_user
):
    production = project.environments.get(name="production")
    variable_set(project=project, key="DB_URL", value="dev-db", actor=admin_user)
    variable_set(
        project=project,
        environment=production,
        key="DB_URL",
        value="prod-db",
        protected=True,
        is_secret=True,
        actor=admin_user,
    )
    values, secrets = job_variables(project=project, environment=production)
    assert "DB_URL" not in values
    assert "prod-db" in secrets  # masked even though not given
    values, _ = job_variables(project=project, environment=production, protected=True)
    assert values["DB_URL"] == "prod-db"
    assert job_variables(project=project)[0]["DB_URL"] == "dev-db"


def test_a_deployment_gets_its_environments_protected_variables(project, admin_user):
    from apps.releases.models import Deployment
    from apps.releases.services import release_create
    from apps.releases.services.deployments import _deploy_request

    production = project.environments.get(name="production")
    variable_set(
        project=project,
        environment=production,
        key="SERVICE_TOKEN",
        value="prod-token",
        protected=True,
        is_secret=True,
        actor=admin_user,
    )
    variable_set(
        project=project,
        environment=project.environments.get(name="staging"),
        key="STAGING_ONLY",
        value="x",
        protected=True,
        actor=admin_user,
    )
    release = release_create(project=project, version="v1", commit_sha="abc1234", actor=admin_user)
    deployment = Deployment.objects.create(release=release, environment=production)
    request = _deploy_request(deployment)
    assert request.env["SERVICE_TOKEN"] == "prod-token"
    assert "STAGING_ONLY" not in request.env


# --- inline jobs ------------------------------------------------------------------------


def test_a_developer_cannot_run_inline_jobs(project, member, api):
    before = PipelineRun.objects.count()
    response = api(member("developer")).post(
        reverse("run-list"), {"project": project.slug, "jobs": INLINE}, format="json"
    )
    assert response.status_code == 403
    assert "inline jobs need the admin role" in response.json()["detail"]
    assert PipelineRun.objects.count() == before


def test_an_admins_inline_run_of_main_gets_no_protected_variables(
    project, repo, admin_user, api, tmp_path
):
    out = tmp_path / "inline-seen.txt"  # inline jobs keep no artifacts: write outside
    jobs = [
        {"name": "show", "retries": 0, "script": [f'echo "key=${{DEPLOY_KEY:-absent}}" > {out}']}
    ]
    response = api(admin_user).post(
        reverse("run-list"),
        {"project": project.slug, "ref": "main", "commit_sha": repo.head, "jobs": jobs},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["protected"] is False
    run = execute(PipelineRun.objects.get(pk=response.json()["id"]))
    assert run.protected is False
    assert out.read_text().strip() == "key=absent"


@override_settings(CONTROLPLANE_INLINE_JOBS_ROLE="developer")
def test_the_install_may_let_developers_run_inline_jobs(project, member, api):
    response = api(member("developer")).post(
        reverse("run-list"), {"project": project.slug, "jobs": INLINE}, format="json"
    )
    assert response.status_code == 201, response.content


# --- masking ------------------------------------------------------------------------------


def test_logs_mask_the_base64_url_and_hex_forms(tmp_path):
    secret = "p@ss word/42"
    forms = [
        secret,
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode((secret + "\n").encode()).decode(),  # echo "$S" | base64
        base64.urlsafe_b64encode(secret.encode()).decode(),
        "p%40ss%20word%2F42",
        "p%40ss+word%2F42",
        secret.encode().hex(),
        secret.encode().hex().upper(),
    ]
    writer = LogWriter(tmp_path / "job.log", secrets=[secret])
    text = "".join(f"line {i}: {form}\n" for i, form in enumerate(forms))
    for i in range(0, len(text), 7):  # in small chunks: a form split across two is masked
        writer.write(text[i : i + 7].encode())
    writer.close()
    written = (tmp_path / "job.log").read_text()
    assert written.count(MASK) == len(forms), written
    for form in forms:
        assert form.rstrip("=") not in written


# --- the variables API and form -----------------------------------------------------------


def test_admin_sets_a_protected_secret_and_nobody_reads_it_back(project, admin_user, api, member):
    response = api(admin_user).post(
        reverse("variable-list"),
        {
            "project": project.slug,
            "environment": "production",
            "key": "DEPLOY_TOKEN",
            "value": "tok-123",
            "is_secret": True,
            "protected": True,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["value"] is None
    assert response.json()["protected"] is True
    listed = api(member("viewer")).get(reverse("variable-list")).json()["results"]
    assert [(v["key"], v["environment"], v["value"]) for v in listed] == [
        ("DEPLOY_TOKEN", "production", None)
    ]
    event = AuditEvent.objects.filter(action="variable.set").latest("id")
    assert event.data["protected"] is True
    assert "tok-123" not in str(event.data)


def test_a_developer_cannot_set_or_delete_variables(project, admin_user, api, member):
    variable = variable_set(project=project, key="TOKEN", value="v1", actor=admin_user)
    client = api(member("developer"))
    response = client.post(
        reverse("variable-list"),
        {"project": project.slug, "key": "TOKEN", "value": "mine"},
        format="json",
    )
    assert response.status_code == 403
    assert client.delete(reverse("variable-detail", args=[variable.pk])).status_code == 403
    variable.refresh_from_db()
    assert variable.value == "v1"


def test_variable_api_refuses_an_unknown_environment_and_a_bad_key(project, admin_user, api):
    client = api(admin_user)
    url = reverse("variable-list")
    bad_env = {"project": project.slug, "environment": "nope", "key": "A", "value": "x"}
    response = client.post(url, bad_env, format="json")
    assert response.status_code == 400
    assert "no environment 'nope'" in str(response.json())
    response = client.post(
        url, {"project": project.slug, "key": "1-A", "value": "x"}, format="json"
    )
    assert response.status_code == 400
    assert project.variables.count() == 0


def test_the_project_page_form_sets_and_removes_a_variable(project, admin_user, member, client):
    url = reverse("projects:variable-save", args=[project.slug])
    client.force_login(member("developer"))
    assert client.post(url, {"key": "X", "value": "1"}).status_code == 403
    assert project.variables.count() == 0
    client.force_login(admin_user)
    page = client.get(project.get_absolute_url()).content.decode()
    assert 'id="variable-form"' in page
    body = {"key": "X", "value": "1", "environment": "staging", "protected": "1"}
    response = client.post(url, body)
    assert response.status_code == 302
    variable = project.variables.get()
    assert (variable.key, variable.environment.name, variable.protected, variable.is_secret) == (
        "X",
        "staging",
        True,
        False,
    )
    client.post(url, {"key": "X", "environment": "staging", "delete": "1"})
    assert project.variables.count() == 0
