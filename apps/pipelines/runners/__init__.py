"""Runners execute one job's script somewhere: ``local`` (a process group on the worker),
``docker`` (a container per job) or ``kubernetes`` (a batch/v1 Job per job). All take the same
:class:`RunRequest`."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event

from ..logs import LogWriter
from ..resources import Resources


@dataclass
class RunRequest:
    script: list[str]
    workspace: Path
    env: dict[str, str]
    timeout: float
    log: LogWriter
    cancel: Event = field(default_factory=Event)
    image: str = ""
    # What the job asks for (options["resources"]); only the kubernetes runner reads it.
    resources: Resources = field(default_factory=Resources)
    # The secret values among env's (the kubernetes runner keeps them out of its manifest).
    secrets: tuple[str, ...] = ()
    # The rows' ids, for labels on what a runner creates elsewhere.
    project_id: int | None = None
    run_id: int | None = None
    job_id: int | None = None
    # Called with what the runner starts (orphans.group_entry / container_entry) as soon as it
    # exists, so that it can be ended should this worker die (apps/pipelines/orphans.py).
    started: Callable[[dict, str], None] | None = None

    def record(self, entry: dict, kind: str) -> None:
        if self.started is not None:
            self.started(entry, kind)


@dataclass
class RunOutcome:
    exit_code: int | None
    timed_out: bool = False
    canceled: bool = False
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.canceled or self.error)


def get_runner(name: str):
    from .docker import DockerRunner
    from .kubernetes import KubernetesRunner
    from .local import LocalRunner

    runners = {"local": LocalRunner, "docker": DockerRunner, "kubernetes": KubernetesRunner}
    try:
        return runners[name]()
    except KeyError:
        raise ValueError(f"Unknown runner '{name}'.") from None
