"""gunicorn settings of the image (``entrypoint.sh web``): Prometheus multiprocess bookkeeping.

With ``PROMETHEUS_MULTIPROC_DIR`` set every gunicorn worker writes its counters to its own file
there and ``/metrics`` (any worker) sums the folder. A worker that exits leaves its counters
(they stay part of the totals) but its live gauges must go: ``mark_process_dead``."""


def child_exit(server, worker):
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
