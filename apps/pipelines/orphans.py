"""What a job attempt started, recorded on the job (``Job.processes``), and ending it when the
worker that watched it is gone.

A worker killed with ``kill -9`` (or lost with its host's network) leaves its job's process
group running — the local runner starts it in a session of its own, so it survives — and its
docker-runner container running. Retrying the job then would run it twice at once: two
trainings writing one model, two deploys of one build. So each runner records what it starts
as it starts it, and the reaper (``sweeper.job_reap_lost``) and the worker of the next attempt
(``executor.execute_job``) end what is recorded before the job runs again.

A process group can only be ended from its own host; a container from a client of its engine.
What cannot be reached from here is reported back as such (the reaper then waits, see
``sweeper``).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field

from apps.core.processes import group_alive, start_time, stop_group

logger = logging.getLogger(__name__)

# An orphan's worker is gone and nothing reads its output: a short grace before SIGKILL.
ORPHAN_GRACE_SECONDS = 1.0


def host_id() -> str:
    return socket.gethostname()


def engine_id() -> str:
    """The Docker engine this process talks to: DOCKER_HOST, or this host's local socket."""
    return os.environ.get("DOCKER_HOST") or f"unix://{host_id()}"


def group_entry(pgid: int) -> dict:
    """A process group to record; with the leader's start time, a reused pid is not ours."""
    return {"pgid": pgid, "start": start_time(pgid)}


def container_entry(container_id: str) -> dict:
    return {"id": container_id, "engine": engine_id()}


def processes_add(processes: dict, *, group: dict | None = None, container: dict | None = None):
    """``processes`` with one more group or container (a new dict: the job's field)."""
    out = {
        "host": processes.get("host") or host_id(),
        "groups": list(processes.get("groups", [])),
        "containers": list(processes.get("containers", [])),
    }
    if group is not None:
        out["groups"].append(group)
    if container is not None:
        out["containers"].append(container)
    return out


@dataclass
class Ending:
    """What :func:`processes_end` did: ended (it ran and was stopped), gone (had ended by
    itself), unreachable (another host or engine), failed (still runs)."""

    ended: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        """Nothing recorded may still run."""
        return not (self.unreachable or self.failed)

    def describe(self) -> str:
        parts = []
        for name, said in (
            ("ended", "ended"),
            ("gone", "already gone:"),
            ("unreachable", "cannot reach"),
            ("failed", "could not end"),
        ):
            items = getattr(self, name)
            if items:
                parts.append(f"{said} {', '.join(items)}")
        return "; ".join(parts)


def processes_end(processes: dict, *, grace: float = ORPHAN_GRACE_SECONDS) -> Ending:
    """End every process group and container ``processes`` records that still runs."""
    ending = Ending()
    host = processes.get("host") or ""
    for group in processes.get("groups", []):
        pgid, label = int(group["pgid"]), f"process group {group['pgid']} on {host}"
        if host != host_id():
            # Another host's pid means nothing here; only its own workers can end it.
            ending.unreachable.append(label)
        elif not _ours(pgid, group.get("start")):
            ending.gone.append(label)
        elif stop_group(pgid, grace=grace):
            ending.ended.append(label)
        else:
            ending.failed.append(label)
    containers = processes.get("containers", [])
    if containers:
        _end_containers(containers, ending)
    if ending.ended or not ending.settled:
        logger.warning("Orphans of a lost job: %s", ending.describe())
    return ending


def _ours(pgid: int, start: str | None) -> bool:
    """Whether the group still runs and is the one recorded (not a reused pid's)."""
    if not group_alive(pgid):
        return False
    leader = start_time(pgid)
    # The leader may have exited while the rest of its group runs on: still ours then.
    return leader is None or start is None or leader == start


def _end_containers(containers: list[dict], ending: Ending) -> None:
    here = engine_id()
    reachable = [c for c in containers if c.get("engine") == here]
    for c in containers:
        if c.get("engine") != here:
            ending.unreachable.append(f"container {c['id'][:12]} on {c.get('engine')}")
    if not reachable:
        return
    import requests
    from docker.client import from_env
    from docker.errors import DockerException, NotFound

    try:
        client = from_env()
    except (DockerException, requests.RequestException, OSError) as exc:
        ending.failed.extend(f"container {c['id'][:12]} ({exc})" for c in reachable)
        return
    try:
        for c in reachable:
            label = f"container {c['id'][:12]}"
            try:
                container = client.containers.get(c["id"])
                running = container.status in ("running", "restarting", "paused", "created")
                container.remove(force=True)  # kills it first when it runs
            except NotFound:
                ending.gone.append(label)
            except (DockerException, requests.RequestException) as exc:
                ending.failed.append(f"{label} ({exc})")
            else:
                (ending.ended if running else ending.gone).append(label)
    finally:
        client.close()
