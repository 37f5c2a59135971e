"""The local runner: the job's script in bash, in its own process group, on the worker host."""

import os
import selectors
import subprocess
import time

from apps.core.processes import KILL_GRACE_SECONDS, stop_group

from ..orphans import group_entry
from . import RunOutcome, RunRequest

CHUNK = 256 * 1024


class LocalRunner:
    name = "local"

    def run(self, req: RunRequest) -> RunOutcome:
        # `set -e` stops at the first failing command; each command is echoed before it runs.
        script = "set -eo pipefail\n" + "\n".join(
            f"printf '\\033[1;32m$ %s\\033[0m\\n' {_sh_quote(line)}\n{line}" for line in req.script
        )
        req.workspace.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(  # noqa: S603 - the script is the project's own pipeline
            ["/bin/bash", "-c", script],
            cwd=req.workspace,
            env=req.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: cancel kills every child too
            bufsize=0,
        )
        try:
            req.record(group_entry(proc.pid), "group")
        except BaseException:
            _kill_group(proc, grace=0)  # not recorded, so not left running either
            proc.stdout.close()
            raise
        deadline = time.monotonic() + req.timeout
        outcome = RunOutcome(exit_code=None)
        fd = proc.stdout.fileno()
        reaped = False
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(fd, selectors.EVENT_READ)
                while True:
                    # Wake up for output at once; otherwise a few times a second to notice a
                    # cancel or the deadline.
                    if selector.select(timeout=0.2):
                        chunk = os.read(fd, CHUNK)
                        if not chunk:  # EOF: the script and everything it started closed it
                            break
                        req.log.write(chunk)
                    if req.cancel.is_set() and not outcome.canceled:
                        outcome.canceled = True
                        _kill_group(proc)
                    elif time.monotonic() > deadline and not outcome.timed_out:
                        outcome.timed_out = True
                        _kill_group(proc)
                    elif proc.poll() is not None and not reaped:
                        # The script is done but something it left running holds the output
                        # open: the job is over, so is its process group.
                        reaped = True
                        _kill_group(proc, grace=0)
            proc.wait()
        finally:
            if proc.poll() is None:
                _kill_group(proc, grace=0)
            proc.stdout.close()
        outcome.exit_code = proc.returncode
        return outcome


def _kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE_SECONDS) -> None:
    # The script leads its own group (start_new_session): its pid is the group's id.
    stop_group(proc.pid, grace=grace, process=proc)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
