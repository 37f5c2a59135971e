"""What a job leaves behind: a build's content-addressed bundle (the commit's files, its model
and metrics) and the artifacts its spec names, stored by digest."""

import glob
import hashlib
import os
import tarfile
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.core.storage import disk_full_message, is_disk_full

from . import git
from .artifacts import bundle_store_path, bundle_store_put
from .choices import JobKind
from .logs import LogWriter
from .models import Artifact, Job
from .workspace import OUTPUT_DIR, JobSetupError, file_inside, inside, open_inside


def bundle_files(job: Job, workspace: Path) -> list[Path]:
    """What goes into a bundle: the files of the commit (``git ls-files``; no job leftovers
    such as virtualenvs or caches) plus the model and metrics files the build wrote."""
    tracked = git.tracked_files(workspace) if (workspace / ".git").exists() else None
    if tracked is None:  # no checkout (manual run without a repository): everything but ours
        files = {
            p.relative_to(workspace)
            for p in workspace.rglob("*")
            if p.is_file() and p.relative_to(workspace).parts[0] not in (".git", OUTPUT_DIR)
        }
    else:
        files = {Path(name) for name in tracked if (workspace / name).is_file()}
    for key in ("model", "metrics"):
        if job.options.get(key):
            path = inside(workspace, job.options[key])
            if not path.is_file():
                raise JobSetupError(f"The build declared {key} {job.options[key]}, not written.")
            files.add(path.relative_to(workspace.resolve()))
    return sorted(files)


def bundle_build(job: Job, workspace: Path, log: LogWriter, with_model: bool = True) -> dict:
    """A content-addressed bundle (code at the commit + model + locked requirements): the same
    inputs always give the same digest (sorted members, fixed times and owners). Kept in the
    bundle store so releases can be deployed from it later."""
    import gzip

    out = workspace / OUTPUT_DIR / "bundle.tar.gz"
    if out.parent.is_symlink():  # the job may have swapped the folder for a link out
        raise JobSetupError(f"'{OUTPUT_DIR}' is a symlink; the bundle is not written through it.")
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)  # a symlink left there is removed, not written through
    files = bundle_files(job, workspace)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with (
        os.fdopen(fd, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for rel in files:
            # A symlink is stored as the file it names, which must be in the workspace.
            with open_inside(workspace, workspace / rel) as fh:
                info = tar.gettarinfo(arcname=str(rel), fileobj=fh)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                tar.addfile(info, fh)
    digest = "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()
    try:
        bundle_store_put(out, digest)  # atomic: a full disk leaves no partial bundle
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise JobSetupError(
            disk_full_message(bundle_store_path(digest), exc, what="the bundle to")
        ) from exc
    log.line(f"bundle {digest} ({out.stat().st_size} bytes, {len(files)} files)")
    result: dict[str, Any] = {"bundle_digest": digest, "bundle_files": len(files)}
    if with_model and job.options.get("model"):
        model = inside(workspace, job.options["model"])
        result["model"] = {
            "name": job.options.get("model_name") or Path(job.options["model"]).stem,
            "path": job.options["model"],
            "digest": "sha256:" + hashlib.sha256(model.read_bytes()).hexdigest(),
            "metrics": read_metrics(job, workspace, log),
        }
    return result


def read_metrics(job: Job, workspace: Path, log: LogWriter) -> dict:
    if not job.options.get("metrics"):
        return {}
    import json

    try:
        metrics = json.loads(inside(workspace, job.options["metrics"]).read_text())
    except (OSError, ValueError) as exc:
        raise JobSetupError(f"Metrics file {job.options['metrics']}: {exc}") from exc
    if not isinstance(metrics, dict):
        raise JobSetupError(f"Metrics file {job.options['metrics']} must hold a JSON object.")
    if isinstance(metrics.get("metrics"), dict) and set(metrics) <= {"metrics", "params", "tags"}:
        # {"metrics": {...}, "params": {...}, "tags": {...}}: the registry keeps the sections.
        kept = {s: _scalars(metrics.get(s)) for s in ("metrics", "params", "tags")}
        shown = kept["metrics"]
    else:
        kept = shown = _scalars(metrics)
    log.line("metrics " + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())))
    return kept


def _scalars(values: Any) -> dict:
    if not isinstance(values, dict):
        return {}
    return {k: v for k, v in values.items() if isinstance(v, int | float | str | bool)}


def artifacts_collect(job: Job, workspace: Path, log: LogWriter) -> list[Artifact]:
    patterns = list(job.options.get("artifacts", []))
    if job.kind == JobKind.BUILD:
        patterns.append(f"{OUTPUT_DIR}/bundle.tar.gz")
    if job.kind == JobKind.TRAIN and job.options.get("model"):
        patterns.append(glob.escape(job.options["model"]))  # the model, kept by itself
    if not patterns:
        return []
    dest_root = Path(settings.ARTIFACT_DIR) / str(job.run_id) / str(job.pk)
    found: dict[str, Path] = {}
    for pattern in patterns:
        matches = sorted(p for p in workspace.glob(pattern) if p.is_file())
        if not matches:
            log.line(f"artifact {pattern}: no file matched")
        for path in matches:
            rel = str(path.relative_to(workspace))
            if ".." in Path(rel).parts:
                raise JobSetupError(f"Artifact '{rel}' points outside the workspace.")
            file_inside(workspace, path)  # every one checked before anything is stored
            found.setdefault(rel, path)
    artifacts = []
    for rel, path in found.items():
        target = dest_root / rel
        # Written under a temporary name, then renamed: a stored file (an earlier attempt's, or
        # one the step cache hard-linked) is never half overwritten.
        incoming = target.with_name(f".incoming-{target.name}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            sha = hashlib.sha256()
            with open_inside(workspace, path) as src, open(incoming, "wb") as dst:
                while chunk := src.read(1 << 20):
                    sha.update(chunk)
                    dst.write(chunk)
            os.replace(incoming, target)
        except OSError as exc:
            incoming.unlink(missing_ok=True)
            if not is_disk_full(exc):
                raise
            # The volume is full: what this job stored so far goes too (the job fails, no row
            # will point at it), which gives the next job its space back.
            for kept in artifacts:
                (dest_root / kept.path).unlink(missing_ok=True)
            raise JobSetupError(disk_full_message(target, exc, what=f"artifact {rel} to")) from exc
        artifacts.append(
            Artifact(job=job, path=rel, size=target.stat().st_size, sha256=sha.hexdigest())
        )
    log.line(f"{len(artifacts)} artifact(s) kept")
    return artifacts


def wants_image(project) -> bool:
    """Build an image when asked to, or when an environment deploys images."""
    return (
        settings.CONTROLPLANE_BUILD_IMAGES
        or project.environments.filter(deployer__in=("docker", "kubernetes")).exists()
    )
