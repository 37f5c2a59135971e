"""Fault-injection tests (issue 11): real worker and beat processes killed with SIGKILL on the
test stack (PostgreSQL + Redis in CI). Each test reports its figures; the session's summary
lists them all (docs/reliability.md)."""

import pytest

from .workers import REPORTED


@pytest.fixture
def procs():
    """procs(process) starts it (waiting until it is ready unless wait=False); all are
    stopped at the end, killed ones included, and whatever the test's jobs started and the
    test left running (it failed before the reaper ended it) is ended, so it cannot tick
    into, or hold a port of, the next test. Ask for it after the database (``project``)."""
    started = []

    def start(process, *, wait: bool = True):
        started.append(process)
        return process.start(wait=wait)

    yield start
    for process in reversed(started):
        process.stop()
    from apps.pipelines.models import Job
    from apps.pipelines.orphans import processes_end

    for processes in Job.objects.exclude(processes={}).values_list("processes", flat=True):
        processes_end(processes, grace=0)


def pytest_terminal_summary(terminalreporter):
    if not REPORTED:
        return
    terminalreporter.section("fault-injection figures")
    for figures in REPORTED:
        terminalreporter.write_line(figures.line())
