"""A job's workspace as the control plane handles it: what is its own there (OUTPUT_DIR), the
paths it reads and writes kept inside it (no symlink leads out), and the project's cached
folders moved in before the script and out after it."""

import logging
import os
import shutil
from pathlib import Path

from django.conf import settings

from .logs import LogWriter
from .models import Job

logger = logging.getLogger(__name__)

OUTPUT_DIR = ".controlplane"  # inside the workspace: what the control plane itself writes


class JobSetupError(Exception):
    """The job could not be prepared (checkout, paths); the message goes on the job."""


# Where the workspace is as the job's script sees it (the docker runner mounts it).
RUNNER_WORKSPACE = {"docker": "/workspace"}


def inside(workspace: Path, relative: str) -> Path:
    path = (workspace / relative).resolve()
    if not path.is_relative_to(workspace.resolve()):
        raise JobSetupError(f"'{relative}' points outside the workspace.")
    return path


def file_inside(workspace: Path, path: Path) -> Path:
    """``path`` (a file the job left in its workspace) with its symlinks resolved, refused when
    they lead out of the workspace: a job, or a commit, must not turn an artifact or a bundle
    into a copy of the worker's files (another project's mirror, the control plane's data)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(workspace.resolve()):
        rel = path.relative_to(workspace) if path.is_relative_to(workspace) else path
        raise JobSetupError(
            f"'{rel}' is a symlink to a file outside the workspace; artifacts and bundles "
            "never follow a symlink out of it."
        )
    return resolved


def open_inside(workspace: Path, path: Path):
    """Open for reading a file of the workspace, not following a symlink swapped in since."""
    fd = os.open(file_inside(workspace, path), os.O_RDONLY | os.O_NOFOLLOW)
    return os.fdopen(fd, "rb")


def cache_root(job: Job) -> Path:
    return Path(settings.WORKSPACE_DIR) / "cache" / str(job.run.project_id)


def cache_restore(job: Job, workspace: Path, log: LogWriter) -> None:
    """Move the project's cached folders into the workspace (a rename: instant). Two jobs of
    one project running at once: the second starts cold, like a cache miss."""
    for rel in job.options.get("cache", []):
        src, dst = cache_root(job) / rel, inside(workspace, rel)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src, dst)
            log.line(f"cache {rel}: restored")
        except FileNotFoundError:
            log.line(f"cache {rel}: empty, starting cold")
        except OSError as exc:
            log.line(f"cache {rel}: not restored ({exc.strerror})")


def cache_save(job: Job, workspace: Path) -> None:
    for rel in job.options.get("cache", []):
        src, dst = inside(workspace, rel), cache_root(job) / rel
        if not src.is_dir():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(dst, ignore_errors=True)
        try:
            os.rename(src, dst)
        except OSError:
            logger.warning("Could not keep cache %s of job %s", rel, job.pk, exc_info=True)
