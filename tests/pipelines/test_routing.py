"""Queue routing by resources (``JOB_RESOURCE_QUEUES``, docs/workers.md): which queue a job's
message goes to, what its log says about it, and a real worker that consumes only the GPU queue
running only the job that asked for a GPU."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.pipelines.choices import JOB_KIND_QUEUE, JobKind
from apps.pipelines.resources import job_resources, parse_memory
from apps.pipelines.routing import check_rules, job_queue, parse_rules, route

from .worker import WorkerProcess, wait_for

RULES = [
    {"queue": "gpu", "gpu": 1, "max": {"gpu": 4, "memory": "128Gi"}},
    {"queue": "highmem", "memory": "32Gi", "kinds": ["train", "script"]},
    {"queue": "big-cpu", "cpu": 8},
]


@pytest.fixture
def rules(settings):
    settings.JOB_RESOURCE_QUEUES = RULES
    return RULES


def queue_for(kind: str, resources=None) -> str:
    options = {} if resources is None else {"resources": resources}
    return route(kind=kind, options=options).queue


def test_train_jobs_go_to_the_train_queue_as_before():
    assert JOB_KIND_QUEUE[JobKind.TRAIN].value == "train"
    assert queue_for("train") == "train"
    assert queue_for("test") == "test"
    assert queue_for("build") == "build"


def test_without_rules_resources_change_nothing(settings):
    settings.JOB_RESOURCE_QUEUES = []
    assert queue_for("train", {"gpu": 1, "memory": "64Gi"}) == "train"


def test_a_gpu_job_goes_to_the_gpu_queue(rules):
    found = route(kind="train", options={"resources": {"gpu": 1, "cpu": 4}})
    assert found.queue == "gpu"
    assert found.rule == 1
    assert found.note == (
        "resources cpu=4 gpu=1: queue gpu "
        "(JOB_RESOURCE_QUEUES rule 1: gpu ≥ 1, gpu ≤ 4, memory ≤ 128Gi)"
    )


def test_the_first_rule_that_applies_wins(rules):
    # Both the gpu and the highmem rule want it; the gpu rule comes first.
    assert queue_for("train", {"gpu": 2, "memory": "64Gi"}) == "gpu"
    assert queue_for("train", {"memory": "64Gi"}) == "highmem"
    assert queue_for("train", {"memory": "16Gi"}) == "train"  # below the highmem threshold
    assert queue_for("test", {"cpu": 16}) == "big-cpu"
    assert queue_for("test", {"cpu": 4}) == "test"


def test_kinds_restrict_a_rule(rules):
    assert queue_for("script", {"memory": "40Gi"}) == "highmem"
    assert queue_for("build", {"memory": "40Gi"}) == "build"


def test_a_request_over_every_rules_max_goes_to_the_kind_queue_with_a_warning(rules):
    found = route(kind="train", options={"resources": {"gpu": 8}})
    assert found.queue == "train"
    assert found.unsatisfied
    assert found.note == (
        "warning: no JOB_RESOURCE_QUEUES rule takes resources gpu=8; sent to the train queue, "
        "whose workers may not have them"
    )


def test_a_gpu_request_with_no_gpu_rule_is_warned_about(settings):
    settings.JOB_RESOURCE_QUEUES = [{"queue": "highmem", "memory": "32Gi"}]
    found = route(kind="train", options={"resources": {"gpu": 1}})
    assert (found.queue, found.unsatisfied) == ("train", True)


def test_a_cpu_request_no_rule_is_for_is_no_warning(rules):
    found = route(kind="train", options={"resources": {"cpu": 2}})
    assert (found.queue, found.unsatisfied) == ("train", False)
    assert found.note == "resources cpu=2: no rule for them; the train queue"


@pytest.mark.parametrize(
    "options",
    [{}, {"resources": None}, {"resources": "lots"}, {"resources": {}}, None, "x"],
)
def test_absent_or_odd_resources_mean_the_kind_queue(rules, options):
    assert route(kind="train", options=options).queue == "train"


def test_unreadable_values_are_ignored_and_named(rules):
    found = route(kind="train", options={"resources": {"gpu": "two", "memory": "64Gi"}})
    assert found.queue == "highmem"
    assert "ignored: gpu must be a whole number, not 'two'" in found.note


def test_job_queue_reads_the_job_row(rules):
    class Row:
        kind = "train"
        options = {"resources": {"gpu": 1}}

    assert job_queue(Row()) == "gpu"


def test_resource_values():
    assert parse_memory("4Gi") == 4 * 1024**3
    assert parse_memory("1G") == 10**9
    assert parse_memory("512m") == 512 * 1024**2  # docker style, as the deployer reads it
    assert parse_memory(2048) == 2048
    got = job_resources({"resources": {"cpu": "500m", "memory": "4Gi", "gpu": 2}})
    assert (got.cpu, got.memory, got.gpu) == (0.5, 4 * 1024**3, 2)


@pytest.mark.parametrize(
    ("rules_", "message"),
    [
        ({"queue": "gpu"}, "must be a list of rules"),
        (["gpu"], "rule 1 must be a mapping"),
        ([{"gpu": 1}], "rule 1 needs a queue name"),
        ([{"queue": "gpu", "gpus": 1}], "rule 1 has unknown keys: gpus"),
        ([{"queue": "a", "cpu": 1}, {"queue": "b", "memory": "lots"}], "rule 2: memory must be"),
        ([{"queue": "gpu", "max": {"disk": 1}}], "max must map cpu, memory or gpu"),
        ([{"queue": "gpu", "kinds": ["training"]}], "kinds must be a list of job kinds"),
    ],
)
def test_wrong_rules_are_refused_naming_the_rule(settings, rules_, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        parse_rules(rules_)
    settings.JOB_RESOURCE_QUEUES = rules_
    (error,) = check_rules()
    assert message in error.msg
    assert error.id == "pipelines.E001"


def test_the_rules_queues_are_declared_to_celery(monkeypatch):
    import importlib

    from controlplane.settings import base

    monkeypatch.setenv("CONTROLPLANE_JOB_RESOURCE_QUEUES", json.dumps(RULES))
    try:
        reloaded = importlib.reload(base)
        names = [q.name for q in reloaded.CELERY_TASK_QUEUES]
        assert names == ["default", "test", "build", "deploy", "train", "monitor"] + [
            "gpu",
            "highmem",
            "big-cpu",
        ]
        assert reloaded.JOB_RESOURCE_QUEUES == RULES
    finally:
        monkeypatch.delenv("CONTROLPLANE_JOB_RESOURCE_QUEUES")
        importlib.reload(base)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_consuming_only_gpu_runs_only_the_gpu_job(settings, project, admin_user):
    from apps.pipelines import services
    from apps.pipelines.choices import JobStatus
    from apps.pipelines.logs import log_path
    from apps.pipelines.models import Job

    settings.JOB_RESOURCE_QUEUES = RULES
    worker = WorkerProcess(
        queues="default,gpu", extra_env={"CONTROLPLANE_JOB_RESOURCE_QUEUES": json.dumps(RULES)}
    ).start()
    run_ = None
    try:
        run_ = services.run_create(
            project=project,
            actor=admin_user,
            jobs=[
                {
                    "name": "fit",
                    "kind": "train",
                    "script": [
                        "echo fitting on the gpu host",
                        "mkdir -p out && echo model > out/model.bin",
                        "echo '{\"f1\": 0.9}' > out/metrics.json",
                    ],
                    "options": {
                        "resources": {"gpu": 1},
                        "model": "out/model.bin",
                        "metrics": "out/metrics.json",
                    },
                },
                {"name": "lint", "kind": "test", "script": ["echo never here"]},
            ],
        )
        fit = run_.jobs.get(name="fit")
        fit = wait_for(lambda: (j := Job.objects.get(pk=fit.pk)).is_terminal and j, 60)
        assert fit.status == JobStatus.SUCCEEDED, fit.error_message
        log = log_path(fit.pk, run_.pk).read_text()
        assert "fitting on the gpu host" in log
        assert "queue gpu (JOB_RESOURCE_QUEUES rule 1" in log
        # Nobody consumes the test queue: the other job waits there, unclaimed.
        lint = Job.objects.get(run=run_, name="lint")
        assert (lint.status, lint.worker) == (JobStatus.QUEUED, "")
    finally:
        worker.stop()
        if run_ is not None:  # the job left in the test queue ends, its message finds nothing
            services.run_cancel(run=run_, actor=admin_user)
