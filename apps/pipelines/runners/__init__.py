"""Runners execute one job's script somewhere: ``local`` (a process group on the worker) or
``docker`` (a container per job). Both take the same :class:`RunRequest`."""

from dataclasses import dataclass, field
from pathlib import Path
from threading import Event

from ..logs import LogWriter


@dataclass
class RunRequest:
    script: list[str]
    workspace: Path
    env: dict[str, str]
    timeout: float
    log: LogWriter
    cancel: Event = field(default_factory=Event)
    image: str = ""


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
    from .local import LocalRunner

    runners = {"local": LocalRunner, "docker": DockerRunner}
    try:
        return runners[name]()
    except KeyError:
        raise ValueError(f"Unknown runner '{name}'.") from None
