"""The step cache: a pipeline of 3 jobs in sequence (``needs``), each with ``step_cache`` and
about 1 s of work (``sleep 1`` and an artifact written), run cold and then again with nothing
changed (every job a hit: no checkout, no script, its artifact hard-linked), through a real
worker. Each round gives the jobs a new spec variable, so its cold run misses and the next
one hits.
Prints both times and the cached run as a fraction of the cold one.

    .venv/bin/python bench/step_cache.py [--rounds 5] [--stack production|embedded]
"""

import time

import _stack
from pipeline_latency import breakdown, make_repo

TARGET = 0.10  # a cached re-run takes at most 10 % of a cold run


def jobs(round_: int) -> list[dict]:
    names = ["prepare", "train", "evaluate"]
    return [
        {
            "name": name,
            "needs": names[:i][-1:],
            "retries": 0,
            "script": [
                "sleep 1",
                "mkdir -p out",
                'head -c 1048576 /dev/urandom > "out/$CONTROLPLANE_JOB_NAME.bin"',
            ],
            # A spec variable is in the key: a new round misses, its re-run hits.
            "options": {
                "step_cache": True,
                "artifacts": ["out/*.bin"],
                "variables": {"ROUND": str(round_)},
            },
        }
        for i, name in enumerate(names)
    ]


def run_once(project, sha: str, round_: int):
    from apps.pipelines import services
    from apps.pipelines.choices import RUN_TERMINAL, RunStatus
    from apps.pipelines.commits import Commit
    from apps.pipelines.models import PipelineRun

    started = time.perf_counter()
    run = services.run_create(
        project=project, actor="bench", jobs=jobs(round_), commit=Commit(sha=sha, ref="main")
    )
    while True:
        status = PipelineRun.objects.filter(pk=run.pk).values_list("status", flat=True)[0]
        if status in RUN_TERMINAL:
            break
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    assert status == RunStatus.SUCCEEDED, status
    return run, elapsed


def main() -> None:
    args = _stack.parse_args(__doc__, rounds={"type": int, "default": 5})
    var = _stack.setup(args, "step_cache")
    from apps.pipelines.models import Job
    from apps.projects.services import project_create

    url, sha = make_repo()
    project = project_create(
        name="bench", actor="bench", repository_url=url, with_default_environments=False
    )
    worker = _stack.start_worker()
    try:
        cold, cached, cached_ids = [], [], []
        for i in range(args.rounds):
            _run, seconds = run_once(project, sha, i)
            cold.append(seconds)
            run, seconds = run_once(project, sha, i)
            cached.append(seconds)
            cached_ids.append(run.pk)
            hits = Job.objects.filter(run=run, cached_from__isnull=False).count()
            assert hits == 3, f"round {i}: {hits} of 3 jobs were cache hits"
    finally:
        _stack.stop(worker)
    c, h = _stack.summary(cold), _stack.summary(cached)
    ratio = h["median"] / c["median"]
    print(f"stack: {_stack.stack_name(args)}; {args.rounds} rounds")
    print(
        f"cold run, 3 jobs x (sleep 1 + 1 MiB artifact): median {c['median'] * 1000:.0f} ms, "
        f"max {c['max'] * 1000:.0f} ms"
    )
    print(
        f"cached re-run (3 hits): median {h['median'] * 1000:.0f} ms, max {h['max'] * 1000:.0f} ms"
    )
    print(f"cached / cold: {ratio:.1%} (target <= {TARGET:.0%})")
    print("where a cached re-run's time goes (medians from the rows' timestamps):")
    for name, values in breakdown(cached_ids).items():
        print(f"  {name:<40} {_stack.summary(values)['median']:7.1f} ms")
    _stack.cleanup(var)


if __name__ == "__main__":
    main()
