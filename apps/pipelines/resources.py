"""A job's ``resources`` (``options["resources"]``: ``cpu`` number, ``memory`` like "4Gi",
``gpu`` whole number), read defensively, in units that compare (cores, bytes, GPUs) and in the
quantities Kubernetes wants. Used by the queue routing and the kubernetes runner."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Kubernetes quantities: decimal (k, M, G, T, P, E) and binary (Ki … Ei) suffixes; the docker
# runner's lowercase "512m" / "4g" mean binary units here, as in the kubernetes deployer.
_MEMORY = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(Ki|Mi|Gi|Ti|Pi|Ei|[kMGTPE]|[bmgt])?")
_KUBE_MEMORY = re.compile(r"[0-9]+(\.[0-9]+)?([kMGTPE]|[KMGTPE]i)?")
_UNITS = {
    None: 1,
    "b": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
    "E": 1000**6,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
}
_MILLICPU = re.compile(r"([0-9]+)m")


@dataclass(frozen=True)
class Resources:
    """What a job asks for; ``None`` = not asked. ``problems`` lists values that were ignored."""

    cpu: float | None = None  # cores
    memory: int | None = None  # bytes
    gpu: int = 0
    memory_text: str = ""  # as written, for Kubernetes and for messages
    problems: tuple[str, ...] = field(default=(), compare=False)

    @property
    def asked(self) -> bool:
        return self.cpu is not None or self.memory is not None or self.gpu > 0

    def describe(self) -> str:
        parts = []
        if self.cpu is not None:
            parts.append(f"cpu={self.cpu:g}")
        if self.memory is not None:
            parts.append(f"memory={self.memory_text}")
        if self.gpu:
            parts.append(f"gpu={self.gpu}")
        return " ".join(parts) or "none"


def parse_cpu(value: Any) -> float:
    """Cores from a number (1.5) or a quantity ("500m", "2"); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"cpu must be a number, not {value!r}")
    if isinstance(value, str):
        millis = _MILLICPU.fullmatch(value.strip())
        if millis:
            return int(millis[1]) / 1000
    try:
        cores = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"cpu must be a number, not {value!r}") from None
    if cores <= 0 or cores != cores:  # NaN
        raise ValueError(f"cpu must be positive, not {value!r}")
    return cores


def parse_memory(value: Any) -> int:
    """Bytes from a quantity ("4Gi", "512Mi", "1G", "2g") or a number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"memory must be a quantity such as 4Gi, not {value!r}")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"memory must be positive, not {value!r}")
        return int(value)
    match = _MEMORY.fullmatch(str(value).strip())
    if not match or float(match[1]) <= 0:
        raise ValueError(f"memory must be a quantity such as 4Gi, not {value!r}")
    return int(float(match[1]) * _UNITS[match[2]])


def parse_gpu(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"gpu must be a whole number, not {value!r}")
    if value < 0:
        raise ValueError(f"gpu must not be negative, not {value!r}")
    return int(value)


def job_resources(options: Any) -> Resources:
    """``options["resources"]`` of a job, never raising: a value that cannot be read is left
    out and named in ``problems`` (the spec is meant to have refused it already)."""
    raw = options.get("resources") if isinstance(options, dict) else None
    if not isinstance(raw, dict):
        return Resources()
    values: dict[str, Any] = {}
    problems = []
    for key, parse in (("cpu", parse_cpu), ("memory", parse_memory), ("gpu", parse_gpu)):
        if raw.get(key) in (None, ""):
            continue
        try:
            values[key] = parse(raw[key])
        except ValueError as exc:
            problems.append(str(exc))
    if "memory" in values:
        text = raw["memory"]
        values["memory_text"] = str(text).strip() if isinstance(text, str) else f"{int(text)}"
    return Resources(**values, problems=tuple(problems))


def kube_cpu(cores: float) -> str:
    """Cores as a Kubernetes CPU quantity in millicores (1.5 → "1500m")."""
    return f"{max(1, round(cores * 1000))}m"


def kube_memory(resources: Resources) -> str:
    """Memory as a Kubernetes quantity: as written when it is one ("4Gi", "1G"), else in bytes
    (a docker-style "512m" is 512 MiB here but 0.512 bytes to Kubernetes)."""
    if _KUBE_MEMORY.fullmatch(resources.memory_text):
        return resources.memory_text
    return str(resources.memory)
