"""The HTTP health check every local deployer shares, and the port helpers around it.

A service is healthy when ``GET http://<host>:<port><path>`` answers 2xx (``host`` is where it
listens, 127.0.0.1 unless the environment says otherwise; a service listening on every address
is checked on 127.0.0.1). The check is
retried until a deadline, and it gives up at once when the thing under test has died (its
container exited, its process is gone): a crash at start then fails in a second, not after the
whole timeout, and the message carries the last lines of its output.
"""

from __future__ import annotations

import errno
import http.client
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

HOST = "127.0.0.1"
WILDCARDS = ("0.0.0.0", "::", "[::]")  # noqa: S104 - addresses to reach, not to bind
INTERVAL = 0.3  # seconds between two probes
PROBE_TIMEOUT = 2.0  # seconds one probe may take
TAIL_LINES = 20


@dataclass
class Health:
    healthy: bool
    seconds: float  # from the start of the check to the verdict
    message: str  # why it is not healthy (last answer or error, how it died, its output)


def reachable(host: str) -> str:
    """The address to reach a service listening on ``host`` at: loopback for a wildcard."""
    return HOST if host in WILDCARDS else host


def probe(
    port: int, path: str, timeout: float = PROBE_TIMEOUT, host: str = HOST
) -> tuple[bool, str]:
    """One GET; ``(True, "")`` on 2xx, else ``(False, what happened)``."""
    conn = http.client.HTTPConnection(reachable(host), port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "controlplane-health"})
        response = conn.getresponse()
        response.read(64 * 1024)
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{exc.__class__.__name__}: {exc}".rstrip(": ")
    finally:
        conn.close()
    if 200 <= response.status < 300:
        return True, ""
    return False, f"HTTP {response.status} {response.reason}"


def wait_healthy(
    *,
    port: int,
    path: str,
    timeout: float,
    died: Callable[[], str | None] = lambda: None,
    output: Callable[[], str] = lambda: "",
    interval: float = INTERVAL,
    host: str = HOST,
) -> Health:
    """Probe until a 2xx answer, the deadline, or ``died()`` returning how it died.

    ``output()`` gives the thing's recent output; its last lines go in the message of a failure.
    """
    start = time.monotonic()
    deadline = start + timeout
    last = "no answer yet"
    while True:
        remaining = deadline - time.monotonic()
        ok, last = probe(port, path, max(0.1, min(PROBE_TIMEOUT, remaining)), host)
        now = time.monotonic()
        if ok:
            return Health(True, now - start, "")
        death = died()
        if death:
            return Health(False, now - start, _with_output(death, output))
        if now >= deadline:
            where = f"{reachable(host)}:{port}{path}"
            reason = f"no healthy answer from {where} in {timeout:g} s ({last})"
            return Health(False, now - start, _with_output(reason, output))
        time.sleep(min(interval, max(0.0, deadline - now)))


def last_lines(text: str, n: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def _with_output(message: str, output: Callable[[], str]) -> str:
    try:
        tail = last_lines(output())
    except Exception as exc:  # the output is a courtesy; never hide the verdict behind it
        tail = f"(output unavailable: {exc})"
    return f"{message}\n--- last output ---\n{tail}" if tail else f"{message} (no output)"


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick), for a candidate to be checked on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something listens on ``port`` (on ``host`` or on all addresses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers themselves: connections in TIME_WAIT do not count, listeners do.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((reachable(host), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
        return False


def wait_port_free(port: int, timeout: float = 5.0, host: str = HOST) -> bool:
    deadline = time.monotonic() + timeout
    while port_in_use(port, host):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
