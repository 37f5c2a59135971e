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


def build_image(*, job: Job, bundle: Path, bundle_digest: str, log: LogWriter) -> dict:
    from docker.client import from_env
    from docker.errors import DockerException

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
        "controlplane.model_version": options.get("model_version", ""),
    }
    base = getattr(settings, "CONTROLPLANE_BUILD_BASE_IMAGE", "")
    log.line(f"building image {tag} from the bundle ({options.get('dockerfile', 'Dockerfile')})")
    try:
        client = from_env()
        with open(bundle, "rb") as context:
            # The low-level API streams the build's output, so it shows live in the job log.
            for chunk in client.api.build(
                fileobj=context,
                custom_context=True,
                encoding="gzip",
                dockerfile=options.get("dockerfile", "Dockerfile"),
                tag=tag,
                labels=labels,
                buildargs={"BASE_IMAGE": base} if base else None,
                network_mode="host",  # never a bridge here; RUN steps may need the index
                rm=True,
                forcerm=True,
                decode=True,
            ):
                if "stream" in chunk:
                    log.write(chunk["stream"].encode())
                if "error" in chunk:
                    raise BuildError(f"docker build failed: {chunk['error'].strip()}")
        image = client.images.get(tag)
    except DockerException as exc:
        raise BuildError(f"Docker engine: {exc}") from exc
    log.line(f"image {tag} {image.id}")
    return {"image": {"ref": tag, "id": image.id, "labels": labels}}
