"""A job printing 200 MB: bytes stored vs printed, worker RSS growth, capture rate.

    .venv/bin/python bench/log_capture.py [--megabytes 200] [--embedded]

Targets (issue 3): bytes stored = bytes printed, worker RSS growth < 50 MB, capture rate
>= 100 MB/s. The same command writing to /dev/null gives the producer's own speed.
"""

import re
import subprocess
import threading
import time
from pathlib import Path

import _stack

LINE = "2026-11-27 12:00:00 INFO epoch 3 step 1234 loss=0.123456 acc=0.987 lr=1e-4 ok"


def rss_kb(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))


def main() -> None:
    args = _stack.parse_args(__doc__, megabytes={"type": int, "default": 200})
    var = _stack.setup(args, "logs")
    from apps.pipelines import services
    from apps.pipelines.logs import log_path
    from apps.pipelines.models import PipelineRun
    from apps.projects.services import project_create

    size = args.megabytes * 1024 * 1024
    # Not a pipe: under `set -o pipefail` yes's SIGPIPE would fail the job.
    command = f"head -c {size} < <(yes '{LINE}')"
    project = project_create(name="bench", actor="bench")
    worker = _stack.start_worker(concurrency=2)
    try:
        # Warm up (imports, connections), then measure.
        warm = services.run_create(
            project=project, actor="bench", jobs=[{"name": "warm", "script": ["echo hi"]}]
        )
        while not PipelineRun.objects.get(pk=warm.pk).is_terminal:
            time.sleep(0.05)
        baseline = rss_kb(worker.pid)
        peak = [baseline]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kb(worker.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        run = services.run_create(
            project=project,
            actor="bench",
            jobs=[{"name": "loud", "script": [command], "timeout": 600}],
        )
        while not PipelineRun.objects.get(pk=run.pk).is_terminal:
            time.sleep(0.05)
        stop.set()
        sampler.join()
    finally:
        _stack.stop(worker)
    job = run.jobs.get()
    path = log_path(job.pk, job.run_id)
    text = path.read_bytes()
    start = text.index((LINE + "\n").encode())  # after the control plane's own header lines
    body = text[start : start + size]
    seconds = (job.finished_at - job.started_at).total_seconds()
    started = time.perf_counter()
    subprocess.run(["bash", "-c", f"{command} > /dev/null"], check=True)
    raw = time.perf_counter() - started
    mb = size / 1024 / 1024
    print(f"stack: {_stack.stack_name(args)}; job status {job.status}")
    line = (LINE + "\n").encode()
    expected = (line * (size // len(line) + 1))[:size]
    print(
        f"printed {size} bytes; stored {len(body)} bytes of job output "
        f"(+{len(text) - len(body)} bytes of control-plane lines); identical: "
        f"{body == expected}"
    )
    print(
        f"worker RSS: baseline {baseline / 1024:.1f} MB, peak {peak[0] / 1024:.1f} MB, "
        f"growth {(peak[0] - baseline) / 1024:.1f} MB (target < 50 MB)"
    )
    print(
        f"capture: {mb:.0f} MB in {seconds:.2f} s = {mb / seconds:.0f} MB/s "
        f"(target >= 100 MB/s); the producer alone to /dev/null: {mb / raw:.0f} MB/s"
    )
    _stack.cleanup(var)


if __name__ == "__main__":
    main()
