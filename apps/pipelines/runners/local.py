"""The local runner: the job's script in bash, in its own process group, on the worker host."""

import os
import signal
import subprocess
import time

from . import RunOutcome, RunRequest

KILL_GRACE_SECONDS = 5


class LocalRunner:
    name = "local"

    def run(self, req: RunRequest) -> RunOutcome:
        # `set -e` stops at the first failing command; `-x` echoes each command into the log.
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
        deadline = time.monotonic() + req.timeout
        outcome = RunOutcome(exit_code=None)
        os.set_blocking(proc.stdout.fileno(), False)
        try:
            while True:
                chunk = _read_available(proc)
                if chunk:
                    req.log.write(chunk)
                if proc.poll() is not None:
                    rest = proc.stdout.read() or b""
                    if rest:
                        req.log.write(rest)
                    break
                if req.cancel.is_set():
                    outcome.canceled = True
                    _kill_group(proc)
                elif time.monotonic() > deadline:
                    outcome.timed_out = True
                    _kill_group(proc)
                if not chunk:
                    time.sleep(0.01)
        finally:
            if proc.poll() is None:
                _kill_group(proc, grace=0)
            proc.stdout.close()
        outcome.exit_code = proc.returncode
        return outcome


def _read_available(proc: subprocess.Popen) -> bytes:
    try:
        return proc.stdout.read(64 * 1024) or b""
    except BlockingIOError:
        return b""


def _kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE_SECONDS) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
