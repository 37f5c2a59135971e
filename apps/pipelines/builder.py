"""The image half of a build job: a Docker image built from the job's content-addressed bundle
(the bundle's gzipped tar is the build context, so the image holds exactly the bundled code),
tagged and labelled with project, commit and bundle digest; the image id is recorded.

Off unless ``CONTROLPLANE_BUILD_IMAGES`` is set (the CD loop turns it on); the engine is the one
``DOCKER_HOST`` names, as for the docker runner.
"""

from pathlib import Path

from django.conf import settings

from .logs import LogWriter
from .models import Job


class BuildError(Exception):
    """The image could not be built; the message goes on the job."""


def build_image(
    *, job: Job, bundle: Path, bundle_digest: str, log: LogWriter, model: dict | None = None
) -> dict:
    run = job.run
    options = job.options
    if options.get("context", ".") not in (".", "./", ""):
        raise BuildError("Only the repository root is supported as the build context.")
    tag = f"controlplane/{run.project.slug}:{run.commit_sha[:12] or run.number}"
    labels = {
        "org.opencontainers.image.revision": run.commit_sha,
        "controlplane.project": run.project.slug,
        "controlplane.commit": run.commit_sha,
        "controlplane.bundle_digest": bundle_digest,
        "controlplane.model_version": (
            f"{model['name']}@{model['digest']}" if model else options.get("model_version", "")
        ),
    }
    log.line(f"building image {tag} from the bundle ({options.get('dockerfile', 'Dockerfile')})")
    with open(bundle, "rb") as context:
        image_id = build_from_context(
            context=context,
            tag=tag,
            labels=labels,
            dockerfile=options.get("dockerfile", "Dockerfile"),
            write=log.write,
        )
    log.line(f"image {tag} {image_id}")
    image = {"ref": tag, "id": image_id, "labels": labels}
    if settings.CONTROLPLANE_REGISTRY:
        image.update(push_image(tag=tag, project=run.project.slug, log=log))
    return {"image": image}


def push_image(*, tag: str, project: str, log: LogWriter) -> dict:
    """Push to ``CONTROLPLANE_REGISTRY`` (e.g. ``registry.example.com/ml``) with the engine's
    credentials; returns the pushed reference and its registry digest."""
    from docker.client import from_env
    from docker.errors import DockerException

    repository = f"{settings.CONTROLPLANE_REGISTRY.rstrip('/')}/{project}"
    version = tag.rsplit(":", 1)[1]
    try:
        client = from_env()
        client.images.get(tag).tag(repository, version)
        log.line(f"pushing {repository}:{version}")
        digest = ""
        for chunk in client.api.push(repository, version, stream=True, decode=True):
            if "error" in chunk:
                raise BuildError(f"docker push failed: {chunk['error'].strip()}")
            digest = (chunk.get("aux") or {}).get("Digest", digest)
    except (DockerException, OSError) as exc:  # requests' errors are OSErrors
        raise BuildError(f"Pushing to {repository}: {exc}") from exc
    if not digest:
        raise BuildError(f"Pushing to {repository}: the registry reported no digest.")
    log.line(f"pushed {repository}@{digest}")
    return {"pushed": f"{repository}:{version}", "repo_digest": f"{repository}@{digest}"}


def build_from_context(
    *, context, tag: str, labels: dict, dockerfile: str = "Dockerfile", write, nocache=False
) -> str:
    """Build ``tag`` from a gzipped tar build context; stream the output to ``write``; return
    the image id. The dependency layers of a Dockerfile that copies requirements first are
    reused from the engine's cache (see bench/cd_loop.py for the figures)."""
    from docker.client import from_env
    from docker.errors import DockerException

    base = getattr(settings, "CONTROLPLANE_BUILD_BASE_IMAGE", "")
    try:
        client = from_env()
        # The low-level API streams the build's output, so it shows live in the job log.
        for chunk in client.api.build(
            fileobj=context,
            custom_context=True,
            encoding="gzip",
            dockerfile=dockerfile,
            tag=tag,
            labels=labels,
            buildargs={"BASE_IMAGE": base} if base else None,
            network_mode="host",  # never a bridge here; RUN steps may need the index
            rm=True,
            forcerm=True,
            nocache=nocache,
            decode=True,
        ):
            if "stream" in chunk:
                write(chunk["stream"].encode())
            if "error" in chunk:
                raise BuildError(f"docker build failed: {chunk['error'].strip()}")
        return client.images.get(tag).id
    except DockerException as exc:
        raise BuildError(f"Docker engine: {exc}") from exc
