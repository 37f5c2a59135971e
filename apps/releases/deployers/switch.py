"""The health-gated switch of the deployers that run the service on one host (docker, process).

Two services cannot listen on one port of one host, so a deploy goes:

1. a *candidate* of the new release on a free side port must become healthy; when it does not,
   it is stopped and the serving release was never touched;
2. the serving release is stopped (kept, to go back to), the new one starts on the real port
   and must be healthy again; when it is not, it is stopped and the previous one is started
   again (and must answer its health check to count as serving);
3. only then is the previous release let go.

The service is down between the previous release's stop and the new one's first healthy answer:
the *switch gap*, recorded on the result. ``target["verify_first"] = False`` skips step 1.

:class:`Switch` holds these steps once; a deployer subclasses it with the few hooks that differ
(how to start, check and stop a release of its kind, and what to keep once it serves).
"""

from __future__ import annotations

import time
from typing import Any, Generic, TypeVar

from .base import DeployError, DeployFailed, DeployRequest, DeployResult, service_host
from .health import Health, free_port, reachable, wait_port_free

Previous = TypeVar("Previous")  # what serves before the deploy (a container, a state)
Running = TypeVar("Running")  # one started release (a container, a process)

UNTOUCHED = "The serving release was not touched."


class Switch(Generic[Previous, Running]):
    """One deploy's switch and its bookkeeping (``details`` goes on the Deployment)."""

    #: What runs a release, for the log: "container", "process".
    kind = "release"
    #: The errors of starting or stopping a release that fail the deploy with a message
    #: (anything else propagates to the deployer).
    errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, request: DeployRequest, details: dict[str, Any] | None = None):
        self.request = request
        self.log = request.log
        self.details: dict[str, Any] = details if details is not None else {}
        self.host = service_host(request)
        self.previous: Previous | None = None

    # --- the hooks --------------------------------------------------------------------------

    def find_previous(self) -> Previous | None:
        """What serves now (tidying up what an interrupted deploy left behind)."""
        raise NotImplementedError

    def release_of(self, previous: Previous) -> str:
        raise NotImplementedError

    def describe_previous(self, previous: Previous) -> str:
        """For "stopping ...": e.g. "cp-churn-prod (r12)", "r12 (pid 4242)"."""
        return self.release_of(previous)

    def start(self, port: int, *, candidate: bool) -> Running:
        """Start the new release listening on ``self.host:port`` (``HOST``, ``PORT``)."""
        raise NotImplementedError

    def check(self, running: Running, port: int) -> Health:
        """Wait for its health check (failing fast when it dies)."""
        raise NotImplementedError

    def discard(self, running: Running) -> None:
        """Stop and remove a candidate, or a new release that failed."""
        raise NotImplementedError

    def stop_previous(self, previous: Previous) -> None:
        """Take the previous release out of service, kept to be started again."""
        raise NotImplementedError

    def restart_previous(self, previous: Previous) -> tuple[Running, int]:
        """Start the previous release again; it and its port, to be checked."""
        raise NotImplementedError

    def commit(self, running: Running, previous: Previous | None) -> str:
        """The new release serves: let the previous one go, record the new one. Returns what
        runs it, for the log ("container 1a2b3c", "pid 4242")."""
        raise NotImplementedError

    def abandon(self) -> None:
        """The deploy failed: forget what was kept for the new release (a no-op by default)."""

    def error_message(self, exc: BaseException, *, candidate: bool) -> str:
        """A start or stop that raised one of :attr:`errors`, as a sentence."""
        return f"{self.request.release} could not be started: {exc}"

    # --- the steps --------------------------------------------------------------------------

    def run(self) -> DeployResult:
        try:
            return self._run()
        except DeployError:
            self.abandon()
            raise

    def _run(self) -> DeployResult:
        req = self.request
        previous = self.previous = self.find_previous()
        if previous is not None:
            self.details["previous_release"] = self.release_of(previous)
        if req.target.get("verify_first", True) is not False:
            self._verify_candidate()
        else:
            self.log(
                f"verify_first is off: the new {self.kind} is checked on the service port only"
            )

        port = req.port
        assert port  # noqa: S101 - the deployer checked it (require_port)
        gap_start = time.monotonic()
        new: Running | None = None
        failure, error_class = "", DeployFailed
        try:
            if previous is not None:
                self.log(f"stopping {self.describe_previous(previous)}")
                self.stop_previous(previous)
            if not wait_port_free(port, host=self.host):
                failure, error_class = f"Port {port} is in use by another program.", DeployError
            else:
                new = self.start(port, candidate=False)
                health = self.check(new, port)
                if not health.healthy:
                    self.details["health"] = health.message
                    failure = (
                        f"{req.release} failed its health check on port {port}: {health.message}"
                    )
        except self.errors as exc:
            failure, error_class = self.error_message(exc, candidate=False), DeployError
        if failure:
            if new is not None:
                self.discard(new)
            restored = self._restore(previous)
            raise error_class(
                failure + self._rollback_note(previous, restored),
                rolled_back=restored,
                details=self.details,
            )
        assert new is not None  # noqa: S101 - no failure means it started
        self.details["switch_gap_seconds"] = round(time.monotonic() - gap_start, 3)
        what = self.commit(new, previous)
        self.log(
            f"{req.release} serves on port {port} ({what}, "
            f"switch gap {self.details['switch_gap_seconds']} s)"
        )
        return DeployResult(url=f"http://{reachable(self.host)}:{port}", details=self.details)

    def _verify_candidate(self) -> None:
        req = self.request
        port = free_port()
        self.details["candidate_port"] = port
        self.log(f"starting a candidate of {req.release} on side port {port}")
        try:
            candidate = self.start(port, candidate=True)
        except self.errors as exc:
            raise DeployError(
                f"{self.error_message(exc, candidate=True)}\n{UNTOUCHED}",
                rolled_back=self.previous is not None,
                details=self.details,
            ) from None
        try:
            health = self.check(candidate, port)
        finally:
            self.discard(candidate)
        if not health.healthy:
            self.details["health"] = health.message
            raise DeployFailed(
                f"{req.release} failed its health check: {health.message}\n{UNTOUCHED}",
                rolled_back=self.previous is not None,
                details=self.details,
            )
        self.details["candidate_healthy_seconds"] = round(health.seconds, 3)
        self.log(f"candidate healthy after {health.seconds:.2f} s")

    def _restore(self, previous: Previous | None) -> bool:
        """Put the previous release back in service; whether it answers its health check."""
        if previous is None:
            return False
        self.log(f"starting {self.release_of(previous)} again")
        try:
            running, port = self.restart_previous(previous)
        except self.errors as exc:
            self.log(f"could not start the previous release: {exc}")
            return False
        health = self.check(running, port)
        if not health.healthy:
            self.log(f"the previous release does not answer: {health.message}")
        return health.healthy

    def _rollback_note(self, previous: Previous | None, restored: bool) -> str:
        if previous is None:
            return "\nNothing served before: the environment has no running release."
        release = self.release_of(previous)
        if restored:
            return f"\nThe previous release {release} serves again."
        return (
            f"\nThe previous release {release} could not be started again: the environment is down."
        )
