"""Trigger → succeeded for a pipeline of 3 jobs each running `true` (local runner, a fresh
checkout of the commit per job), next to the same three commands run by bash.

    .venv/bin/python bench/pipeline_latency.py [--runs 30] [--embedded]
"""

import subprocess
import tempfile
import time
from pathlib import Path

import _stack

SPEC = """version: 1
jobs:
  test: {kind: test, script: ["true"]}
  build: {kind: build, needs: [test], script: ["true"]}
  deploy: {kind: script, needs: [build], script: ["true"]}
"""


def make_repo() -> tuple[str, str]:
    work = Path(tempfile.mkdtemp(prefix="cp-bench-repo-"))
    (work / ".controlplane.yml").write_text(SPEC)
    env = {
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@x",
        "PATH": "/usr/bin:/bin",
    }
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *cmd], cwd=work, env=env, check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True, check=True
    ).stdout.strip()
    return f"file://{work}", sha


def main() -> None:
    args = _stack.parse_args(__doc__, runs={"type": int, "default": 30})
    var = _stack.setup(args, "pipeline")
    from apps.pipelines import services
    from apps.pipelines.choices import RunStatus, Trigger
    from apps.pipelines.commits import Commit
    from apps.pipelines.models import PipelineRun
    from apps.projects.services import project_create

    url, sha = make_repo()
    project = project_create(name="bench", actor="bench", repository_url=url)
    worker = _stack.start_worker()
    try:
        durations = []
        for i in range(args.runs + 2):
            started = time.perf_counter()
            run = services.run_request(
                project=project,
                actor="bench",
                trigger=Trigger.PUSH,
                commit=Commit(sha=sha, ref="main"),
            )
            while True:
                status = PipelineRun.objects.filter(pk=run.pk).values_list("status", flat=True)[0]
                if status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED):
                    break
                time.sleep(0.002)
            elapsed = (time.perf_counter() - started) * 1000
            assert status == RunStatus.SUCCEEDED, status
            if i >= 2:  # the first two warm up the mirror and the worker's connections
                durations.append(elapsed)
    finally:
        _stack.stop(worker)
    bash = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run(["bash", "-c", "true; true; true"], check=True)
        bash.append((time.perf_counter() - started) * 1000)
    pipeline, plain = _stack.summary(durations), _stack.summary(bash)
    print(f"stack: {_stack.stack_name(args)}; {args.runs} runs; 3 chained jobs running `true`")
    print(
        f"pipeline trigger -> succeeded: median {pipeline['median']:.0f} ms, "
        f"p95 {pipeline['p95']:.0f} ms (target: median <= 250 ms)"
    )
    print(
        f"bash -c 'true; true; true':   median {plain['median']:.1f} ms, p95 {plain['p95']:.1f} ms"
    )
    print(f"ratio pipeline / bash: {pipeline['median'] / plain['median']:.0f}x")
    _stack.cleanup(var)


if __name__ == "__main__":
    main()
