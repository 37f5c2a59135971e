"""The Docker engine the docker-marked tests use (scripts/docker_up.sh brings it up).

Without an engine or the base image those tests skip — but in CI with
``CONTROLPLANE_REQUIRE_DOCKER=1`` they fail: a missing engine must never pass silently.
"""

import os

import pytest

IMAGE = "local/python:3.11-bookworm"


def unavailable(reason: str) -> None:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if ci and os.environ.get("CONTROLPLANE_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{reason} (CI with CONTROLPLANE_REQUIRE_DOCKER=1)")
    pytest.skip(f"{reason}: run scripts/docker_up.sh")


def docker_client():
    """A client of the engine that answers and holds the base image, or skip / fail."""
    from docker.client import from_env
    from docker.errors import DockerException

    try:
        client = from_env()
        client.ping()
    except Exception as exc:  # any failure to reach it means "no engine"
        unavailable(f"no Docker engine ({exc.__class__.__name__})")
    try:
        client.images.get(IMAGE)
    except DockerException:
        unavailable(f"no {IMAGE} image on the Docker host")
    return client
