"""The demo's continuous-training story, as the welcome text of ``setup_demo`` tells it, on
the real thing: setup_demo on the test database, its Git repository, a Celery worker running
the example's ``features`` and ``train`` pipelines (scikit-learn in their virtualenvs) and the
process deployer serving the models.

The schedule is proven to be there, short and enabled, then fired by calling the service beat's
message calls (``schedule_fire``), so the test waits for jobs, never for the clock:

features run (scheduled) → dataset ``features`` v1 → a train run started by it → gate passes as
"first model" → a release in dev and staging, waiting for approval to production → a second
scheduled features run reuses ``prepare`` from the step cache and records nothing new → the
lead approves, production serves the model → a manual train run with ``model_type: dummy``
fails its gate, the run page showing both scores."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule

from apps.pipelines import schedules as pipeline_schedules
from apps.pipelines import services as pipeline_services
from apps.pipelines import triggers as pipeline_triggers
from apps.pipelines.choices import JobStatus, RunStatus, Trigger
from apps.pipelines.models import PipelineRun, Schedule
from apps.releases.choices import DeploymentStatus, PromotionStatus
from apps.releases.deployers.process import ProcessDeployer
from apps.releases.models import Deployment, Promotion, Release
from apps.releases.services import promotion_approve
from apps.training.models import DatasetVersion, GateVerdict
from apps.training.selectors import champion_for
from tests.monitoring.closed_loop import serve_on_free_ports
from tests.pipelines.test_worker import finished, log_of
from tests.pipelines.worker import WorkerProcess, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

#: Each pipeline installs scikit-learn into a fresh virtualenv (pip, from the machine's wheel
#: cache or index): seconds on an idle machine, minutes on a loaded one.
RUN_SECONDS = 600
DEPLOY_SECONDS = 300


def failure(run: PipelineRun) -> dict:
    return {
        j.name: (j.status, j.error_message, log_of(run, j.name)[-3000:]) for j in run.jobs.all()
    }


def succeeded(run: PipelineRun) -> PipelineRun:
    run = finished(run, timeout=RUN_SECONDS)
    assert run.status == RunStatus.SUCCEEDED, failure(run)
    return run


def deployed(release: Release, environment: str) -> Deployment:
    def done():
        deployment = Deployment.objects.filter(
            release=release, environment__name=environment
        ).first()
        if deployment is not None and deployment.status == DeploymentStatus.FAILED:
            raise AssertionError(f"{environment}: {deployment.error_message}")
        return (
            deployment if deployment and deployment.status == DeploymentStatus.SUCCEEDED else None
        )

    return wait_for(done, DEPLOY_SECONDS, interval=0.5)


def test_scheduled_features_cached_step_first_model_then_a_dummy_that_fails(setup_demo, client):
    demo = setup_demo()
    project = demo.project
    assert "every 2 minutes" in demo.output and "model_type dummy" in demo.output
    # Only the CT story here: the first (push) run is prepared, which syncs the schedules from
    # its spec as any run of the default branch does, then canceled (its release would
    # compete for the environments; tests/demo/test_newcomer.py runs it).
    push = pipeline_services.run_prepare(run_id=project.runs.get().pk)
    pipeline_services.run_cancel(run=push, actor="test", reason="Not this one.")
    serve_on_free_ports(project)

    # The demo's short schedule exists, is enabled, and beat knows it as a 2-minute interval.
    schedule = Schedule.objects.get(project=project, name="refresh-features")
    assert (schedule.pipeline, schedule.every_seconds, schedule.paused) == ("features", 120, False)
    task = schedule.periodic_task
    assert task.enabled and task.interval.every == 120
    assert task.interval.period == IntervalSchedule.SECONDS

    lead = get_user_model().objects.get(username="lead")
    dev = get_user_model().objects.get(username="dev")
    worker = WorkerProcess(concurrency=2).start()
    try:
        # 1. The scheduled features run records dataset features v1 ...
        first = pipeline_schedules.schedule_fire(schedule_id=schedule.pk)
        assert first.trigger == Trigger.SCHEDULE and first.pipeline == "features"
        first = succeeded(first)
        prepare = first.jobs.get(name="prepare")
        assert prepare.cached_from_id is None
        # Recorded once the job's success committed (training reacts to job_finished).
        features = wait_for(
            lambda: DatasetVersion.objects.filter(
                dataset__project=project, dataset__name="features"
            ).first(),
            30,
        )
        assert (features.version, features.run_id, features.synthetic) == (1, first.pk, False)
        assert features.rows > 700

        # ... which starts train; nothing serves in production: the gate passes, first model.
        train = wait_for(lambda: project.runs.filter(pipeline="train").first(), 60)
        assert (train.trigger, train.trigger_detail) == (Trigger.DATASET, "dataset features v1")
        train = succeeded(train)
        verdict = wait_for(lambda: GateVerdict.objects.filter(job__run=train).first(), 30)
        assert verdict.passed and verdict.reason.startswith("first model: f1 0.")
        assert verdict.champion is None and verdict.evaluated_on.dataset.name == "eval"
        first_model = verdict.model_version
        assert first_model.params["model_type"] == "gbm"

        # Its release deploys to dev and staging and waits for approval to production.
        release = wait_for(lambda: Release.objects.filter(pipeline_run=train).first(), 60)
        assert release.model_version == first_model and release.evidence["gate"]["passed"]
        for name in ("dev", "staging"):
            deployed(release, name)
        promotion = wait_for(
            lambda: Promotion.objects.filter(
                release=release, environment__name="production", status=PromotionStatus.PENDING
            ).first(),
            60,
        )

        # 2. The next scheduled features run (2 minutes on): prepare comes from the cache, the
        # same content is the same version, so train does not run again.
        second = pipeline_schedules.schedule_fire(
            schedule_id=schedule.pk, now=timezone.now() + timedelta(seconds=121)
        )
        assert second is not None and second.trigger == Trigger.SCHEDULE
        second = succeeded(second)
        reused = second.jobs.get(name="prepare")
        assert reused.cached_from_id == prepare.pk and reused.cache_key == prepare.cache_key
        assert DatasetVersion.objects.filter(dataset__name="features").count() == 1
        assert project.runs.filter(pipeline="train").count() == 1

        # 3. The lead approves: production serves the first model, the champion from now on.
        promotion_approve(promotion=promotion, user=lead, comment="First model, go.")
        deployed(release, "production")
        champion = wait_for(
            lambda: champion_for(project=project, model_name="churn", environment="production"),
            30,
        )
        assert champion == first_model

        # 4. A dummy challenger (the pipelines page's Run button with model_type dummy): the
        # job succeeds, its gate fails on f1 with both scores, no release.
        dummy = pipeline_triggers.pipeline_start(
            project=project,
            pipeline="train",
            actor=dev,
            trigger=Trigger.MANUAL,
            params={"model_type": "dummy"},
            reason="by dev from the pipelines page",
        )
        dummy = succeeded(dummy)
        job = dummy.jobs.get(name="train")
        assert job.status == JobStatus.SUCCEEDED
        failed = wait_for(lambda: GateVerdict.objects.filter(job=job).first(), 30)
        assert not failed.passed and failed.champion == first_model
        assert failed.candidate_metrics["f1"] == 0.0
        assert failed.champion_metrics["f1"] == verdict.candidate_metrics["f1"] > 0.8
        assert not Release.objects.filter(pipeline_run=dummy).exists()
        champion_f1 = f"{failed.champion_metrics['f1']:.6g}"
        assert re.match(
            rf"f1 0 vs champion {champion_f1}: -0\.\d+ < min_delta 0\.01", failed.reason
        )

        client.force_login(dev)
        page = client.get(dummy.get_absolute_url())
        assert page.status_code == 200
        html = page.content.decode()
        assert "failed</span>" in html and f"f1 0 vs champion {champion_f1}" in html
        # The pages the welcome text sends a newcomer to are there.
        for url in re.findall(r"(http://\S+/p/\S+/(?:pipelines|models)/)", demo.output):
            path = url.split("://", 1)[1].split("/", 1)[1]
            assert client.get(f"/{path}").status_code == 200, url
    finally:
        worker.stop()
        for env in ("dev", "staging", "production"):
            ProcessDeployer().stop(project=project.slug, environment=env)
