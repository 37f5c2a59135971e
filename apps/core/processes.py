"""Stopping a process group: SIGTERM, a grace period, then SIGKILL.

Both the local job runner (a job's script and whatever it started) and the process deployer (a
service and its children) start their processes in a session of their own, so that the whole
group can be stopped at once. This is the one way they are stopped.

Zombies do not count as running: a child of a dead group member stays one until its new parent
reaps it, which on a host whose PID 1 does not reap may be never.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

KILL_GRACE_SECONDS = 5  # seconds between SIGTERM and SIGKILL
KILL_WAIT_SECONDS = 2  # seconds after SIGKILL, for the group to be gone
POLL_SECONDS = 0.05


def stop_group(
    pgid: int,
    *,
    grace: float = KILL_GRACE_SECONDS,
    process: subprocess.Popen | None = None,
) -> bool:
    """SIGTERM to the process group ``pgid``; SIGKILL to what still runs after ``grace``
    seconds. Whether the group is gone.

    ``process`` is the group leader's :class:`~subprocess.Popen` when this process started it:
    it is then reaped through it (so its ``returncode`` is kept); otherwise the leader is reaped
    with ``waitpid`` when it is our child, and left to its parent when it is not.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT_SECONDS)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            _reap(pgid, process)
            return True
        if wait_group_gone(pgid, wait, process=process):
            return True
    return False


def wait_group_gone(pgid: int, timeout: float, *, process: subprocess.Popen | None = None) -> bool:
    """Wait up to ``timeout`` seconds for no process of the group to run."""
    deadline = time.monotonic() + timeout
    while True:
        gone = not group_alive(pgid)
        # After the check: a leader that died meanwhile (a zombie, not counted) is reaped too.
        _reap(pgid, process)
        if gone:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's processes hold the group: it runs
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat_fields(stat.read_text())
        except (OSError, ValueError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot; None when gone or a zombie. With
    the pid it names one process: a pid reused by another program has another start time."""
    try:
        fields = stat_fields(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError):
        return None
    return None if fields[0] == "Z" else fields[19]


def stat_fields(text: str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` from the third (state) on."""
    # The command name (field 2) may hold spaces and parentheses; fields 3.. follow the last ")".
    return text[text.rindex(")") + 2 :].split()


def reap(pid: int) -> None:
    """Collect the exit status of a child of this process, so it does not stay a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _reap(pid: int, process: subprocess.Popen | None) -> None:
    if process is not None:
        process.poll()
    else:
        reap(pid)
