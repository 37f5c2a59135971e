"""The step cache and retry from the failed step, with jobs executed by the real executor
(claimed and run in-process, as a worker does) on a real Git repository.

Each job's script appends a line to a file outside its workspace: a line is a run of the
script, so a cache hit is proven by the line *not* being written."""

from pathlib import Path

import pytest

from apps.pipelines import services
from apps.pipelines.choices import JobStatus, RunStatus
from apps.pipelines.commits import Commit
from apps.pipelines.executor import execute_job
from apps.pipelines.logs import log_path
from apps.pipelines.models import Job, PipelineRun

from .gitrepo import Repo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def repo(tmp_path, project):
    src = tmp_path / "tree"
    (src / "src").mkdir(parents=True)
    (src / "src" / "prepare.py").write_text("print('prepare v1')\n")
    (src / "train.py").write_text("print('train v1')\n")
    (src / "README.md").write_text("readme v1\n")
    repo = Repo(tmp_path / "git", source=src)
    project.repository_url = repo.url
    project.save()
    return repo


@pytest.fixture
def marks(tmp_path):
    """marks("prepare") → how many times that job's script ran."""
    folder = tmp_path / "marks"
    folder.mkdir()

    def count(name: str) -> int:
        path = folder / name
        return len(path.read_text().splitlines()) if path.exists() else 0

    count.folder = folder
    return count


def pipeline(marks, *, cache=True) -> list[dict]:
    """prepare (keyed by src/) → train (keyed by train.py), each writing an artifact."""
    return [
        {
            "name": "prepare",
            "retries": 0,
            "script": [
                f"echo ran >> {marks.folder}/prepare",
                "mkdir -p out",
                "cat src/prepare.py > out/features.txt",
                'echo "rows=${PARAM_ROWS:-none}" >> out/features.txt',
            ],
            "options": {"step_cache": cache, "inputs": ["src/"], "artifacts": ["out/*.txt"]},
        },
        {
            "name": "train",
            "needs": ["prepare"],
            "retries": 0,
            "script": [
                f"echo ran >> {marks.folder}/train",
                "mkdir -p out",
                "cat train.py > out/model.txt",
            ],
            "options": {"step_cache": cache, "inputs": ["train.py"], "artifacts": ["out/*.txt"]},
        },
    ]


def execute(run: PipelineRun) -> PipelineRun:
    """Run the run's queued jobs one at a time, as a worker would."""
    while job := run.jobs.filter(status=JobStatus.QUEUED).order_by("id").first():
        execute_job(services.job_claim(job_id=job.pk, worker="test-worker"))
    return PipelineRun.objects.get(pk=run.pk)


def start(project, repo, marks, *, params=None, cache=True) -> PipelineRun:
    run = services.run_create(
        project=project,
        actor="test",
        jobs=pipeline(marks, cache=cache),
        commit=Commit(sha=repo.head, ref="main"),
    )
    if params:
        PipelineRun.objects.filter(pk=run.pk).update(params=params)
    run = execute(run)
    assert run.status == RunStatus.SUCCEEDED, [
        (j.name, j.status, j.error_message) for j in run.jobs.all()
    ]
    return run


def job(run: PipelineRun, name: str) -> Job:
    return run.jobs.get(name=name)


def artifact_bytes(job: Job) -> dict[str, bytes]:
    return {a.path: a.file_path.read_bytes() for a in job.artifacts.all()}


def test_unchanged_inputs_reuse_the_outputs_without_running_the_script(
    project, repo, marks, client, admin_user
):
    first = start(project, repo, marks)
    assert (marks("prepare"), marks("train")) == (1, 1)
    second = start(project, repo, marks)
    assert (marks("prepare"), marks("train")) == (1, 1)  # no script ran
    for name in ("prepare", "train"):
        old, new = job(first, name), job(second, name)
        assert new.status == JobStatus.SUCCEEDED
        assert len(new.cache_key) == 64 and new.cache_key == old.cache_key
        assert new.cached_from_id == old.pk
        assert new.result["cache"] == {
            "hit": True,
            "run": first.number,
            "job": name,
            "key": old.cache_key,
        }
        # The same bytes, in the new job's own folder, with the same digests.
        assert artifact_bytes(new) == artifact_bytes(old) != {}
        assert [a.sha256 for a in new.artifacts.all()] == [a.sha256 for a in old.artifacts.all()]
        assert all(
            a.file_path.parent != b.file_path.parent
            for a, b in zip(new.artifacts.all(), old.artifacts.all(), strict=True)
        )
        log = log_path(new.pk, new.run_id).read_text()
        assert f"cached from run #{first.number}, job {name} (key {old.cache_key[:16]}" in log
        assert "checked out" not in log  # not even a checkout
    assert b"prepare v1" in artifact_bytes(job(second, "prepare"))["out/features.txt"]
    # Both pages say where it came from, with a link to that job.
    client.force_login(admin_user)
    source_url = job(first, "prepare").get_absolute_url()
    for page in (second.get_absolute_url(), job(second, "prepare").get_absolute_url()):
        html = client.get(page).content.decode()
        assert f'href="{source_url}"' in html
        assert f"cached from run {first.number}, job prepare" in html


def test_a_change_under_inputs_runs_the_job_again_one_outside_does_not(project, repo, marks):
    first = start(project, repo, marks)
    repo.commit("docs only", {"README.md": "readme v2\n"})
    second = start(project, repo, marks)
    assert (marks("prepare"), marks("train")) == (1, 1)  # README.md is in neither's inputs
    assert job(second, "prepare").cached_from_id == job(first, "prepare").pk

    repo.commit("new preparation", {"src/prepare.py": "print('prepare v2')\n"})
    third = start(project, repo, marks)
    assert marks("prepare") == 2
    prepare = job(third, "prepare")
    assert prepare.cached_from_id is None and "cache" not in prepare.result
    assert prepare.cache_key != job(first, "prepare").cache_key
    assert b"prepare v2" in artifact_bytes(prepare)["out/features.txt"]
    # train.py did not change, but what it is downstream of did: a new key, a real run.
    train = job(third, "train")
    assert marks("train") == 2
    assert train.cached_from_id is None and train.cache_key != job(first, "train").cache_key


def test_a_missing_input_path_is_part_of_the_key(project, repo, marks):
    jobs = pipeline(marks)
    jobs[0]["options"]["inputs"] = ["src/", "config/"]  # no config/ in the commit
    run = services.run_create(
        project=project, actor="t", jobs=jobs[:1], commit=Commit(sha=repo.head, ref="main")
    )
    assert execute(run).status == RunStatus.SUCCEEDED
    repo.commit("config", {"config/settings.toml": "a = 1\n"})
    again = services.run_create(
        project=project, actor="t", jobs=jobs[:1], commit=Commit(sha=repo.head, ref="main")
    )
    assert execute(again).status == RunStatus.SUCCEEDED
    assert marks("prepare") == 2  # the path appeared: a different key
    assert job(again, "prepare").cache_key != job(run, "prepare").cache_key


def test_a_changed_parameter_runs_the_job_again(project, repo, marks):
    start(project, repo, marks, params={"rows": 10})
    start(project, repo, marks, params={"rows": 10})
    assert marks("prepare") == 1
    third = start(project, repo, marks, params={"rows": 20})
    assert (marks("prepare"), marks("train")) == (2, 2)
    assert b"rows=20" in artifact_bytes(job(third, "prepare"))["out/features.txt"]


def test_without_step_cache_every_run_runs_and_a_retry_forces_a_miss(project, repo, marks):
    first = start(project, repo, marks, cache=False)
    second = start(project, repo, marks, cache=False)
    assert (marks("prepare"), marks("train")) == (2, 2)
    assert job(second, "prepare").cache_key == job(first, "prepare").cache_key  # keyed anyway
    assert job(second, "prepare").cached_from_id is None

    cached = start(project, repo, marks)
    assert marks("prepare") == 2 and job(cached, "prepare").cached_from_id is not None
    services.job_retry(job=job(cached, "prepare"), actor="t")  # Retry: the script runs
    cached = execute(cached)
    assert marks("prepare") == 3
    assert job(cached, "prepare").cached_from_id is None
    assert "cache" not in job(cached, "prepare").result


def test_outputs_that_are_gone_are_not_reused(project, repo, marks):
    first = start(project, repo, marks)
    for artifact in job(first, "prepare").artifacts.all():
        artifact.file_path.unlink()
    start(project, repo, marks)
    assert marks("prepare") == 2
    # prepare ran again, its output is the same bytes: train is still a hit.
    assert marks("train") == 1


SPEC = """version: 1
jobs:
  prepare:
    kind: script
    script:
      - echo ran >> {marks}/prepare
      - mkdir -p out && cat src/prepare.py > out/features.txt
    artifacts: [out/features.txt]
  train:
    kind: script
    needs: [prepare]
    script:
      - echo ran >> {marks}/train
      - test ! -f {flag}
  report:
    kind: script
    needs: [train]
    script: [echo ran >> {marks}/report]
"""


def test_rerun_of_a_failed_run_reuses_its_succeeded_steps(
    project, repo, marks, tmp_path, api, admin_user
):
    flag = tmp_path / "fail-train"
    flag.write_text("fail\n")
    repo.commit("spec", {".controlplane.yml": SPEC.format(marks=marks.folder, flag=flag)})
    run = services.run_request(project=project, actor="t", commit=Commit(sha=repo.head))
    run = execute(services.run_prepare(run_id=run.pk))
    assert run.status == RunStatus.FAILED
    assert job(run, "train").status == JobStatus.FAILED
    assert job(run, "report").status == JobStatus.SKIPPED
    assert (marks("prepare"), marks("train"), marks("report")) == (1, 1, 0)

    flag.unlink()  # the cause is fixed outside the commit
    rerun = services.run_rerun(run=run, actor="t")
    assert rerun.rerun_of_id == run.pk and rerun.commit_sha == run.commit_sha
    rerun = execute(services.run_prepare(run_id=rerun.pk))
    assert rerun.status == RunStatus.SUCCEEDED
    # prepare (no step_cache in the spec) is re-used; train and what follows it run.
    assert (marks("prepare"), marks("train"), marks("report")) == (1, 2, 1)
    prepare = job(rerun, "prepare")
    assert prepare.cached_from_id == job(run, "prepare").pk
    assert artifact_bytes(prepare) == artifact_bytes(job(run, "prepare")) != {}
    assert job(rerun, "train").cached_from_id is None
    body = api(admin_user).get(f"/api/v1/runs/{rerun.pk}/").json()
    assert body["rerun_of"] == run.pk
    jobs = {j["name"]: j for j in body["jobs"]}
    assert jobs["prepare"]["cached_from"] == job(run, "prepare").pk
    assert jobs["prepare"]["cache_key"] == job(run, "prepare").cache_key

    # A re-run of a succeeded run runs everything again.
    again = execute(services.run_prepare(run_id=services.run_rerun(run=rerun, actor="t").pk))
    assert again.status == RunStatus.SUCCEEDED
    assert (marks("prepare"), marks("train"), marks("report")) == (2, 3, 2)


def test_a_job_that_consumes_a_dataset_is_keyed_by_its_bytes(
    project, repo, marks, tmp_path, settings
):
    """The ``job_setup`` receivers (training) place consumed datasets after the checkout; the
    key then includes their bytes, so a new dataset version runs the job again."""
    from apps.training.datafiles import describe, store
    from apps.training.services import dataset_version_record

    def record(content: str) -> None:
        source = tmp_path / "raw.csv"
        source.write_text(content)
        stored = store(source, Path(settings.DATASET_DIR))
        dataset_version_record(
            project=project,
            name="raw",
            description=describe(stored).to_dict(),
            path=str(stored),
            announce=False,
            actor="t",
        )

    jobs = pipeline(marks)[:1]
    jobs[0]["options"]["consumes"] = {"raw": "data/raw.csv"}
    runs = []
    for content in ("a,b\n1,2\n", "a,b\n1,2\n", "a,b\n3,4\n"):
        record(content)  # the same bytes twice: the same version
        run = services.run_create(
            project=project, actor="t", jobs=jobs, commit=Commit(sha=repo.head, ref="main")
        )
        runs.append(execute(run))
    first, same, changed = (job(r, "prepare") for r in runs)
    assert marks("prepare") == 2
    assert same.cached_from_id == first.pk and same.cache_key == first.cache_key
    assert changed.cached_from_id is None and changed.cache_key != first.cache_key
