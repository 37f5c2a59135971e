"""Starting named pipelines (pipeline_start): parameters checked against the spec of the commit
the run will run, concurrency skip / queue / cancel_previous, trigger details, dataset triggers,
environment runs at the commit of the release serving there. A real Git repository; the run is
prepared in-process (what the prepare_run task does)."""

import pytest

from apps.pipelines import services, triggers
from apps.pipelines.choices import RunStatus, Trigger
from apps.pipelines.models import PipelineRun
from apps.pipelines.specs import SpecUnavailable
from apps.pipelines.triggers import PipelineNotFound
from apps.projects.spec import ParamError

from .ctrepo import ct_repo

pytestmark = pytest.mark.django_db


@pytest.fixture
def repo(tmp_path):
    return ct_repo(tmp_path)


@pytest.fixture
def git_project(project, repo):
    project.repository_url = repo.url
    project.save()
    return project


def start(project, actor, pipeline="features", **kwargs):
    kwargs.setdefault("trigger", Trigger.MANUAL)
    return triggers.pipeline_start(project=project, pipeline=pipeline, actor=actor, **kwargs)


def prepared(run: PipelineRun) -> PipelineRun:
    return services.run_prepare(run_id=run.pk)


def test_params_are_validated_coerced_and_recorded_with_the_trigger(git_project, admin_user, repo):
    run = start(
        git_project, admin_user, params={"rows": "7", "full": "on"}, reason="by ada from the UI"
    )
    assert run.pipeline == "features"
    assert run.params == {"rows": 7, "region": "eu", "full": True}
    assert run.trigger == Trigger.MANUAL and run.trigger_detail == "by ada from the UI"
    assert run.commit_sha == repo.head  # the default branch head, resolved now
    run = prepared(run)
    assert [j.name for j in run.jobs.all()] == ["prepare"]  # the named pipeline's jobs only
    assert run.spec["pipelines"]["features"]["params"]["rows"]["default"] == 5


@pytest.mark.parametrize(
    ("params", "name", "words"),
    [
        ({"rows": 0}, "rows", ">= 1"),
        ({"rows": "many"}, "rows", "number"),
        ({"region": "mars"}, "region", "one of"),
        ({"colour": "red"}, "colour", "unknown"),
    ],
)
def test_a_bad_parameter_is_named_and_no_run_is_created(
    git_project, admin_user, params, name, words
):
    with pytest.raises(ParamError) as caught:
        start(git_project, admin_user, params=params)
    assert caught.value.name == name and words in caught.value.message
    assert not PipelineRun.objects.exists()


def test_a_required_parameter_without_default_must_be_given(git_project, admin_user):
    with pytest.raises(ParamError) as caught:
        start(git_project, admin_user, pipeline="needy")
    assert caught.value.name == "note" and "required" in caught.value.message
    assert start(git_project, admin_user, pipeline="needy", params={"note": "x"}).params == {
        "note": "x"
    }


def test_unknown_pipeline_and_missing_repository(git_project, project, admin_user):
    with pytest.raises(PipelineNotFound, match="No pipeline 'nope'"):
        start(git_project, admin_user, pipeline="nope")
    git_project.repository_url = "file:///nowhere/at/all.git"
    git_project.save()
    with pytest.raises(SpecUnavailable):
        start(git_project, admin_user)


def test_a_pipeline_gone_from_the_spec_at_that_commit_fails_the_run(git_project, admin_user, repo):
    run = start(git_project, admin_user)
    PipelineRun.objects.filter(pk=run.pk).update(pipeline="vanished")
    run = prepared(run)
    assert run.status == RunStatus.FAILED
    assert f"No pipeline 'vanished' in .controlplane.yml at {repo.head[:12]}" in run.error_message


def test_concurrency_skip_returns_none_and_records_why(git_project, admin_user):
    first = prepared(start(git_project, admin_user, pipeline="solo"))
    assert first.status in (RunStatus.QUEUED, RunStatus.RUNNING)
    assert start(git_project, admin_user, pipeline="solo") is None
    assert PipelineRun.objects.filter(pipeline="solo").count() == 1
    from apps.core.models import AuditEvent

    skipped = AuditEvent.objects.get(action="pipeline.skipped")
    assert f"run #{first.number} is still active (concurrency: skip)" in skipped.reason
    services.run_cancel(run=first, actor=admin_user)
    assert start(git_project, admin_user, pipeline="solo") is not None  # free again


def test_concurrency_queue_starts_another_and_cancel_previous_cancels_the_old(
    git_project, admin_user
):
    a = prepared(start(git_project, admin_user))
    b = prepared(start(git_project, admin_user))  # queue (the default): both exist
    assert {a.status, b.status} <= {RunStatus.QUEUED, RunStatus.RUNNING}
    old = prepared(start(git_project, admin_user, pipeline="latest"))
    new = start(git_project, admin_user, pipeline="latest")
    old.refresh_from_db()
    assert old.status == RunStatus.CANCELED
    assert f"Superseded by run #{new.number}" in old.error_message
    a.refresh_from_db()
    assert a.status != RunStatus.CANCELED  # another pipeline's runs are left alone


def test_concurrency_is_per_environment(git_project, admin_user):
    dev = git_project.environments.get(name="dev")
    assert start(git_project, admin_user, pipeline="solo") is not None
    assert start(git_project, admin_user, pipeline="solo", environment=dev) is not None
    assert start(git_project, admin_user, pipeline="solo", environment=dev) is None


def test_an_environment_runs_the_pipelines_of_its_release_commit(git_project, admin_user, repo):
    released = repo.head
    newer = repo.commit("Next version", {"VERSION": "two\n"})
    dev = git_project.environments.get(name="dev")
    dev.pipeline_commit_sha = released
    dev.save()
    run = start(git_project, admin_user, environment=dev)
    assert run.commit_sha == released and run.environment == dev
    # A run of the releases branch, as the run that released that commit was: its gated
    # model makes a release (a drift retrain's, a schedule's there).
    assert run.ref == git_project.releases_from == "main"
    assert start(git_project, admin_user).commit_sha == newer  # project level: the head


def test_a_new_dataset_version_starts_the_pipelines_that_consume_it(git_project, admin_user):
    runs = triggers.pipelines_on_dataset(
        project=git_project, dataset="raw", version_label="v3", actor="training"
    )
    assert [(r.pipeline, r.trigger, r.trigger_detail) for r in runs] == [
        ("features", Trigger.DATASET, "dataset raw v3")
    ]
    assert runs[0].params == {"rows": 5, "region": "eu", "full": False}  # the defaults
    assert (
        triggers.pipelines_on_dataset(
            project=git_project, dataset="unused", version_label="v1", actor="training"
        )
        == []
    )


def test_monitoring_starts_a_run_with_its_reason(git_project):
    run = start(
        git_project,
        "monitoring",
        trigger=Trigger.MONITOR,
        reason="drift on production: psi(age)=0.31 > 0.2",
    )
    assert run.trigger == Trigger.MONITOR and run.created_by is None
    assert run.trigger_detail.startswith("drift on production")


def test_a_rerun_keeps_pipeline_params_and_environment(git_project, admin_user):
    dev = git_project.environments.get(name="dev")
    run = start(git_project, admin_user, params={"rows": 9}, environment=dev)
    again = services.run_rerun(run=run, actor=admin_user)
    assert (again.pipeline, again.params, again.environment, again.rerun_of) == (
        "features",
        {"rows": 9, "region": "eu", "full": False},
        dev,
        run,
    )
