"""``core.processes.stop_group``: how the process deployer stops a service and the local runner a
job's script (their whole process group), with real processes."""

import signal
import subprocess
import time
from pathlib import Path

from apps.core.processes import group_alive, start_time, stop_group


def start(script: str, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """``script`` in bash in a session of its own; it and the pid of its background child."""
    pidfile = tmp_path / "child.pid"
    proc = subprocess.Popen(  # noqa: S603
        ["/bin/bash", "-c", script.format(pidfile=pidfile)],  # noqa: S607
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the script never started its child"
        time.sleep(0.02)
    return proc, int(pidfile.read_text())


def test_sigterm_stops_a_group_that_listens_at_once(tmp_path):
    proc, child = start("sleep 300 & echo $! > {pidfile}; wait", tmp_path)
    assert group_alive(proc.pid) and start_time(child) is not None
    started = time.monotonic()
    assert stop_group(proc.pid, grace=5, process=proc) is True
    assert time.monotonic() - started < 2  # no waiting for the grace period
    assert not group_alive(proc.pid)
    assert start_time(child) is None
    assert proc.returncode == -signal.SIGTERM  # reaped through its Popen: the status is kept


def test_what_ignores_sigterm_gets_sigkill_after_the_grace(tmp_path):
    # The script exits on SIGTERM; its child ignores it and would run on without the SIGKILL.
    script = "(trap '' TERM; echo $BASHPID > {pidfile}; while :; do sleep 0.1; done) & wait"
    proc, child = start(script, tmp_path)
    started = time.monotonic()
    assert stop_group(proc.pid, grace=0.5, process=proc) is True
    took = time.monotonic() - started
    assert 0.5 <= took < 3, took
    assert start_time(child) is None
    assert not group_alive(proc.pid)


def test_a_group_that_is_gone_already_is_no_error(tmp_path):
    proc, _ = start("echo $$ > {pidfile}", tmp_path)
    proc.wait()
    assert stop_group(proc.pid, process=proc) is True
    assert proc.returncode == 0
    # Without its Popen (the deployer's case: a service of an earlier worker) all the same.
    assert stop_group(proc.pid) is True
