"""Fault-injection tests (issue 11): real worker and beat processes killed with SIGKILL on the
test stack (PostgreSQL + Redis in CI). Each test reports its figures; the session's summary
lists them all (docs/reliability.md)."""

import pytest

from .workers import REPORTED


@pytest.fixture
def procs():
    """procs(process) starts it (waiting until it is ready unless wait=False); all are
    stopped at the end, killed ones included."""
    started = []

    def start(process, *, wait: bool = True):
        started.append(process)
        return process.start(wait=wait)

    yield start
    for process in reversed(started):
        process.stop()


def pytest_terminal_summary(terminalreporter):
    if not REPORTED:
        return
    terminalreporter.section("fault-injection figures")
    for figures in REPORTED:
        terminalreporter.write_line(figures.line())
