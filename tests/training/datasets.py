"""Running one job in this process through the real executor (local runner, real files),
with its after-commit reactions (job_finished) executed, and a small churn-like CSV."""

import random

from apps.pipelines import services
from apps.pipelines.executor import execute_job
from apps.pipelines.models import Job, PipelineRun


def churn_csv(rows: int = 300, seed: int = 7) -> str:
    rnd = random.Random(seed)  # noqa: S311 - test data, not a secret
    lines = ["customer_id,age,monthly_fee,plan,region,churned"]
    for i in range(rows):
        lines.append(
            f"{1000 + i},{rnd.randint(18, 80)},{rnd.uniform(5, 120):.2f},"
            f"{rnd.choice(['basic', 'pro', 'team'])},{rnd.choice(['eu', 'us'])},"
            f"{rnd.choice(['true', 'false'])}"
        )
    return "\n".join(lines) + "\n"


def run_one_job(capture, *, project, actor, script, options, commit=None, environment=None) -> Job:
    """Create a run of one job, claim it as a worker would and execute it here; return the
    job as recorded."""
    with capture(execute=True):
        run = services.run_create(
            project=project,
            actor=actor,
            commit=commit,
            jobs=[{"name": "step", "kind": "script", "script": script, "options": options}],
        )
    if environment is not None:
        PipelineRun.objects.filter(pk=run.pk).update(environment=environment)
    job = run.jobs.get()
    with capture(execute=True):
        claimed = services.job_claim(job_id=job.pk, worker="test-worker")
        assert claimed is not None
        execute_job(claimed)
    return Job.objects.select_related("run").get(pk=job.pk)
