"""The gate inside a real train job (the executor and the local runner, in this process, on
PostgreSQL): the champion serving production is placed in the job's workspace and evaluated
by the gate's command on the same data as the candidate; a worse challenger gets a failed
verdict showing both scores and no release; a better one gets a release carrying the model
and the gate's evidence, which dev and staging deploy (the real process deployer) and which
waits for an approval to reach production, the evidence on the promotion page."""

import hashlib
import json
import sys

import pytest

from apps.core.models import AuditEvent
from apps.pipelines import services
from apps.pipelines.choices import JobStatus, RunStatus
from apps.pipelines.commits import Commit
from apps.pipelines.executor import execute_job
from apps.pipelines.models import Artifact, PipelineRun
from apps.releases.choices import DeploymentStatus, PromotionStatus
from apps.releases.deployers.health import free_port
from apps.releases.deployers.process import ProcessDeployer
from apps.releases.models import Deployment, Promotion, Release
from apps.releases.services import deployment_execute
from apps.training import datafiles
from apps.training.models import GateVerdict, ModelAlias, ModelVersion
from apps.training.services import dataset_version_record
from tests.releases.test_deploy_rules import SERVER, answer

pytestmark = pytest.mark.django_db(transaction=True)

SHA = "0123456789abcdef0123456789abcdef01234567"
PY = sys.executable

# The evaluation: scores the model on the data, and appends what it evaluated (the model's
# and the data's digests) to $EVAL_LOG, outside the workspace, for the test to read.
EVALUATE = """\
import argparse, hashlib, json, os
p = argparse.ArgumentParser()
p.add_argument("--model"); p.add_argument("--data"); p.add_argument("--out")
a = p.parse_args()
model_bytes, data = open(a.model, "rb").read(), open(a.data, "rb").read()
model = json.loads(model_bytes)
with open(os.environ["EVAL_LOG"], "a") as log:
    log.write(json.dumps({
        "model": "sha256:" + hashlib.sha256(model_bytes).hexdigest(),
        "model_path": a.model,
        "data": "sha256:" + hashlib.sha256(data).hexdigest(),
        "run": os.environ["CONTROLPLANE_RUN_NUMBER"],
    }) + "\\n")
rows = data.count(b"\\n") - 1
json.dump({"metrics": {"f1": model["f1"], "latency_ms": model["latency_ms"], "rows": rows}},
          open(a.out, "w"))
"""
EVAL_DATA = b"x,y\n1,0\n2,1\n3,1\n"
GATE = {
    "metric": "f1",
    "direction": "max",
    "min_delta": 0.01,
    "relative": False,
    "guards": {"latency_ms": "min"},
    "environment": "production",
    "dataset": "eval",
    "evaluate": f"{PY} evaluate.py --model {{model}} --data {{data}} --out {{output}}",
}


@pytest.fixture
def envs(project):
    envs = {e.name: e for e in project.environments.all()}
    for env in envs.values():
        env.deployer, env.service_port, env.health_check_timeout = "process", free_port(), 20
        env.save()
    return envs


@pytest.fixture
def deploy_dir(settings, tmp_path, project):
    settings.CONTROLPLANE_DEPLOY_DIR = tmp_path / "deploy"
    yield settings.CONTROLPLANE_DEPLOY_DIR
    for env in ("dev", "staging", "production"):
        ProcessDeployer().stop(project=project.slug, environment=env)


@pytest.fixture
def src(tmp_path, project, settings):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "evaluate.py").write_text(EVALUATE)
    (folder / "server.py").write_bytes(SERVER)
    (folder / "eval.csv").write_bytes(EVAL_DATA)
    # The job consumes dataset "eval": its version, placed at data/eval.csv before the script.
    description = datafiles.describe(folder / "eval.csv")
    dataset_version_record(
        project=project,
        name="eval",
        description=description.to_dict(),
        path=str(datafiles.store(folder / "eval.csv", settings.DATASET_DIR)),
    )
    return folder


def train_run(project, src, tmp_path, *, f1, latency=12, ref="main", script=None, gate=GATE):
    """A run of one train job whose script writes a model scoring ``f1``; executed here."""
    model = tmp_path / f"model-{f1}-{latency}.json"
    model.write_text(json.dumps({"f1": f1, "latency_ms": latency}))
    metrics = tmp_path / f"metrics-{f1}.json"
    metrics.write_text(json.dumps({"metrics": {"f1": f1}, "params": {"seed": 7}}))
    script = script or [
        f"mkdir -p artifacts data && cp {src}/evaluate.py {src}/server.py .",
        f"cp {src}/eval.csv data/eval.csv",
        f"cp {model} artifacts/model.json && cp {metrics} artifacts/metrics.json",
    ]
    run = services.run_create(
        project=project,
        actor="t",
        commit=Commit(sha=SHA, ref=ref),
        spec={"serve": {"command": "python server.py", "health": "/healthz"}},
        jobs=[
            {
                "name": "train",
                "kind": "train",
                "script": script,
                "options": {
                    "model": "artifacts/model.json",
                    "metrics": "artifacts/metrics.json",
                    "model_name": "churn",
                    "consumes": {"eval": "data/eval.csv"},
                    "gate": gate,
                    "variables": {"EVAL_LOG": str(tmp_path / "evaluations.jsonl")},
                },
            }
        ],
    )
    job = services.job_claim(job_id=run.jobs.get().pk, worker="w")
    execute_job(job)
    return PipelineRun.objects.get(pk=run.pk)


def evaluations(tmp_path, run):
    lines = (tmp_path / "evaluations.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["run"] == str(run.number)]


def crown(project, model_version):
    """What a deployment to production records (the registry's alias): this version serves."""
    ModelAlias.objects.update_or_create(
        project=project,
        model_name=model_version.name,
        environment=project.environments.get(name="production"),
        defaults={"model_version": model_version},
    )


def test_first_model_then_a_worse_challenger_fails_the_gate_and_makes_no_release(
    project, src, tmp_path, client, admin_user
):
    # No champion yet: the first model passes (on a branch that releases nothing).
    first = train_run(project, src, tmp_path, f1=0.80, ref="feature/first")
    job = first.jobs.get()
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    champion = ModelVersion.objects.get(job=job)
    assert (champion.name, champion.version, champion.metrics) == ("churn", 1, {"f1": 0.80})
    assert champion.params == {"seed": 7}
    assert champion.gate_verdict.passed and champion.gate_verdict.champion is None
    assert champion.gate_verdict.reason.startswith("first model")
    # The model is kept as an artifact with its digest, and bundled with the code.
    kept = Artifact.objects.get(job=job, path="artifacts/model.json")
    assert f"sha256:{kept.sha256}" == champion.artifact_digest == job.result["model"]["digest"]
    assert job.result["bundle_digest"].startswith("sha256:")
    assert len(evaluations(tmp_path, first)) == 1  # the candidate only: nobody to compare with
    crown(project, champion)

    worse = train_run(project, src, tmp_path, f1=0.70)
    job = worse.jobs.get()
    # The job trained: it succeeded. The verdict says no.
    assert (worse.status, job.status) == (RunStatus.SUCCEEDED, JobStatus.SUCCEEDED)
    challenger = ModelVersion.objects.get(job=job)
    verdict = GateVerdict.objects.get(model_version=challenger)
    assert not verdict.passed
    assert verdict.champion == champion
    assert verdict.reason.startswith("f1 0.7 vs champion 0.8: -0.1 < min_delta 0.01")
    assert verdict.candidate_metrics["f1"] == 0.70 and verdict.champion_metrics["f1"] == 0.80
    assert verdict.environment.name == "production"
    assert AuditEvent.objects.filter(action="gate_verdict.recorded", object_id=verdict.pk).exists()
    # Both models were evaluated in that job, on the same data: the champion's own file.
    done = evaluations(tmp_path, worse)
    data_digest = "sha256:" + hashlib.sha256(EVAL_DATA).hexdigest()
    assert [e["model"] for e in done] == [challenger.artifact_digest, champion.artifact_digest]
    assert {e["data"] for e in done} == {data_digest} == {job.result["gate"]["data_digest"]}
    assert done[1]["model_path"] == ".controlplane/champion/model.json"
    assert verdict.champion_metrics["rows"] == verdict.candidate_metrics["rows"] == 3
    # Lineage: the gate's dataset is what the challenger was evaluated on, not trained on.
    assert verdict.evaluated_on is not None
    assert list(challenger.evaluated_on.all()) == [verdict.evaluated_on]
    assert not challenger.trained_on.exists()
    assert not Release.objects.exists()
    # The run page and the job page show the failed verdict with both scores.
    client.force_login(admin_user)
    page = client.get(worse.get_absolute_url()).content.decode()
    assert 'id="gate-train"' in page and "failed" in page
    assert "f1 0.7 vs champion 0.8" in page
    job_page = client.get(job.get_absolute_url()).content.decode()
    assert "f1=0.7" in job_page and "f1=0.8" in job_page and "churn v1" in job_page


def test_a_better_challenger_is_released_to_staging_and_waits_for_approval_with_the_evidence(
    project,
    src,
    tmp_path,
    client,
    admin_user,
    envs,
    deploy_dir,
):
    first = train_run(project, src, tmp_path, f1=0.80, ref="feature/first")
    champion = ModelVersion.objects.get(job=first.jobs.get())
    crown(project, champion)

    better = train_run(project, src, tmp_path, f1=0.85, latency=11)
    job = better.jobs.get()
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    model_version = ModelVersion.objects.get(job=job)
    assert model_version.gate_verdict.passed, model_version.gate_verdict.reason
    release = Release.objects.get(pipeline_run=better)
    assert release.model_version == model_version
    assert release.bundle_digest == job.result["bundle_digest"]
    gate = release.evidence["gate"]
    assert gate["champion"]["version"] == champion.version
    assert gate["candidate_metrics"]["f1"] == 0.85 and gate["champion_metrics"]["f1"] == 0.80
    assert gate["dataset"]["name"] == "eval"
    assert gate["reason"].startswith("f1 0.85 vs champion 0.8: +0.05 ≥ min_delta 0.01")

    # dev and staging deploy it automatically (the bundle holds the code and the new model).
    for name in ("dev", "staging"):
        deployment = Deployment.objects.get(release=release, environment=envs[name])
        deployment = deployment_execute(deployment_id=deployment.pk)
        assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.log
        assert answer(envs[name].service_port)["release"] == release.version
    promotion = Promotion.objects.get(release=release, environment=envs["production"])
    assert promotion.status == PromotionStatus.PENDING
    assert not Deployment.objects.filter(environment=envs["production"]).exists()

    client.force_login(admin_user)
    release_page = client.get(release.get_absolute_url()).content.decode()
    assert "f1 0.85 vs champion 0.8" in release_page and "churn v1" in release_page
    page = client.get(promotion.get_absolute_url()).content.decode()
    assert 'id="gate"' in page
    assert "f1 0.85 vs champion 0.8: +0.05 ≥ min_delta 0.01" in page
    assert "churn v1, serving production" in page
    assert "dataset <strong>eval</strong>" in page
    assert "0.85</td>" in page and "0.8</td>" in page  # both scores, side by side


def test_a_gate_without_a_champion_file_or_evaluation_output_fails_the_job(project, src, tmp_path):
    first = train_run(project, src, tmp_path, f1=0.80, ref="feature/first")
    crown(project, ModelVersion.objects.get(job=first.jobs.get()))
    broken = dict(GATE, evaluate="true")  # writes no metrics: the gate cannot decide
    run = train_run(project, src, tmp_path, f1=0.9, gate=broken)
    job = run.jobs.get()
    assert job.status == JobStatus.FAILED
    assert "gate/candidate.json" in job.error_message and "was not written" in job.error_message
    assert not Release.objects.exists()


def test_a_train_job_that_writes_no_model_or_unreadable_metrics_fails_saying_so(
    project, src, tmp_path
):
    no_model = train_run(project, src, tmp_path, f1=0.8, script=["mkdir -p artifacts"])
    job = no_model.jobs.get()
    assert job.status == JobStatus.FAILED
    assert job.error_message == "The train job wrote no model at artifacts/model.json."

    garbled = train_run(
        project,
        src,
        tmp_path,
        f1=0.8,
        script=[
            "mkdir -p artifacts && echo '{}' > artifacts/model.json",
            "echo '{not json' > artifacts/metrics.json",
        ],
    )
    job = garbled.jobs.get()
    assert job.status == JobStatus.FAILED
    assert job.error_message.startswith("The metrics file artifacts/metrics.json cannot be read")
    assert not ModelVersion.objects.exists()
