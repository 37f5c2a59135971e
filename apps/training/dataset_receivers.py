"""Datasets jobs consume and produce, wired to the executor's signals (docs/datasets.md).

- ``job_setup`` (worker, after the checkout): each ``consumes`` entry ``{name: path}`` gets the
  newest real version of the dataset copied from the store to ``path`` and ``DATA_<NAME>`` set
  to it. A dataset with no version yet whose path is in the commit is first recorded from
  that file. In an environment with ``synthetic_data`` the job gets generated look-alike data
  instead (recorded as a synthetic version), never a real row.
- ``job_script_succeeded`` (worker): each ``produces`` entry is described, stored and profiled;
  the result goes to ``job.result["datasets"]``, what was consumed to
  ``job.result["consumed"]``.
- ``job_finished`` (after commit, the job succeeded): the produced datasets are recorded as
  DatasetVersions; a new real version starts the pipelines that run on it.

TRICKY: ``job_setup`` cannot return a value, and what it placed must reach the job's result.
It is kept on the Job instance itself (``CONSUMED_ATTR``), which the executor passes to both
signals in the same process: nothing in the workspace the script could rewrite.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.pipelines.choices import JobStatus
from apps.pipelines.models import Job
from apps.pipelines.signals import JobStepError, job_finished, job_script_succeeded, job_setup

from . import datafiles, fakedata
from .models import DatasetVersion
from .profile import profile as profile_of
from .selectors import dataset_newest_real
from .services import dataset_version_record

logger = logging.getLogger(__name__)

CONSUMED_ATTR = "_datasets_consumed"
WORK_DIR = ".controlplane"  # the executor's own folder in the workspace


def data_variable(name: str) -> str:
    """``DATA_<NAME>``: the dataset's name upper-cased, other characters as ``_``."""
    return "DATA_" + re.sub(r"[^A-Z0-9_]", "_", name.upper())


def _inside(workspace: Path, relative: str, name: str) -> Path:
    path = (workspace / relative).resolve()
    if not path.is_relative_to(workspace.resolve()):
        raise JobStepError(f"dataset '{name}': '{relative}' points outside the workspace")
    return path


def _reason(exc: datafiles.DataFileError) -> str:
    return str(exc).removeprefix(f"{exc.path}: ")


def _synthetic_run(job: Job) -> bool:
    environment = job.run.environment
    return bool(environment is not None and environment.synthetic_data)


# --- consumed ------------------------------------------------------------------------------


def datasets_setup(sender, *, job: Job, workspace: Path, log, env: dict, **kwargs) -> None:
    consumes = job.options.get("consumes") or {}
    consumed: dict[str, dict[str, Any]] = {}
    synthetic = bool(consumes) and _synthetic_run(job)
    for name, relative in consumes.items():
        target = _inside(workspace, relative, name)
        version = dataset_newest_real(project=job.run.project, name=name)
        if version is None:
            version = _record_committed(job, workspace, name, relative, target, log)
        if synthetic:
            version = _synthetic_version(job, workspace, name, version, log)
        stored = Path(version.path)
        if not stored.is_file():
            raise JobStepError(
                f"dataset '{name}' v{version.version}: its stored file {stored} is gone"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # the committed file, or a symlink: replaced, not followed
        shutil.copyfile(stored, target)
        env[data_variable(name)] = relative
        consumed[name] = {
            "version": version.version,
            "fingerprint": version.fingerprint,
            "synthetic": version.synthetic,
        }
        log.line(
            f"dataset {name} v{version.version}{' (synthetic)' if version.synthetic else ''}:"
            f" {version.rows} rows, {version.fingerprint[:12]} → {relative}"
            f" (${data_variable(name)})"
        )
    setattr(job, CONSUMED_ATTR, consumed)


def _describe_and_store(path: Path, within: Path) -> tuple[datafiles.FileDescription, Path, dict]:
    description = datafiles.describe(path)
    stored = datafiles.store(path, settings.DATASET_DIR, within=within)
    return description, stored, profile_of(stored, description=description)


def _record_committed(
    job: Job, workspace: Path, name: str, relative: str, target: Path, log
) -> DatasetVersion:
    """The first version of a dataset nothing produced yet: the file at its path in the commit
    (raw data kept in the repository), so lineage starts there. Its run is the run whose
    commit it came from; it has no job."""
    if not target.is_file():
        raise JobStepError(
            f"dataset '{name}' has no version yet and {relative} is not in the commit"
        )
    try:
        description, stored, profile = _describe_and_store(target, workspace)
    except datafiles.DataFileError as exc:
        raise JobStepError(f"dataset '{name}': {relative} {_reason(exc)}") from exc
    log.line(f"dataset {name}: first version taken from {relative} in the commit")
    return dataset_version_record(
        project=job.run.project,
        name=name,
        description=description.to_dict(),
        path=str(stored),
        profile=profile,
        run=job.run,
        # Not announced: the pipeline consuming it is the one running now.
        announce=False,
        actor=f"job:{job.pk}",
    )


def _synthetic_version(
    job: Job, workspace: Path, name: str, real: DatasetVersion, log
) -> DatasetVersion:
    """Look-alike data of ``real``'s schema from its stored profile (at most
    ``DATASET_SYNTHETIC_MAX_ROWS`` rows), checked against the real stored file so that no real
    row is in it; recorded as a synthetic version. The seed comes from the real fingerprint:
    the same real version gives the same synthetic one."""
    stored_real = Path(real.path)
    try:
        profile = real.profile or profile_of(stored_real)
        rows = min(real.rows or 0, settings.DATASET_SYNTHETIC_MAX_ROWS)
        folder = workspace / WORK_DIR / "synthetic"
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{name}{stored_real.suffix}"
        fakedata.generate(profile, rows, int(real.fingerprint[:15], 16), out=out, real=stored_real)
        description, stored, fake_profile = _describe_and_store(out, folder)
    except (datafiles.DataFileError, fakedata.FakeDataError, OSError) as exc:
        raise JobStepError(
            f"dataset '{name}': no synthetic data from v{real.version}: {exc}"
        ) from exc
    log.line(f"dataset {name}: {rows} synthetic rows generated from the profile of v{real.version}")
    return dataset_version_record(
        project=job.run.project,
        name=name,
        description=description.to_dict(),
        path=str(stored),
        profile=fake_profile,
        run=job.run,
        job=job,
        synthetic=True,
        actor=f"job:{job.pk}",
    )


# --- produced ------------------------------------------------------------------------------


def datasets_produced(sender, *, job: Job, workspace: Path, log, **kwargs) -> dict[str, Any]:
    result: dict[str, Any] = {}
    consumed = getattr(job, CONSUMED_ATTR, None)
    if consumed:
        result["consumed"] = consumed
    produces = job.options.get("produces") or {}
    datasets: dict[str, dict[str, Any]] = {}
    for name, relative in produces.items():
        path = _inside(workspace, relative, name)
        try:
            description, stored, profile = _describe_and_store(path, workspace)
        except datafiles.DataFileError as exc:
            raise JobStepError(f"produced dataset '{name}': {relative} {_reason(exc)}") from exc
        datasets[name] = {**description.to_dict(), "path": str(stored), "profile": profile}
        log.line(
            f"dataset {name}: {description.rows} rows, {len(description.columns)} columns,"
            f" {description.fingerprint[:12]} ({relative})"
        )
    if datasets:
        result["datasets"] = datasets
    return result


def datasets_record(sender, *, job: Job, **kwargs) -> None:
    """After commit, once a job succeeded: its produced datasets become versions. Data derived
    from synthetic input is synthetic too (never offered to a run as real data)."""
    result = job.result or {}
    if job.status != JobStatus.SUCCEEDED or not result.get("datasets"):
        return
    synthetic = any(c.get("synthetic") for c in (result.get("consumed") or {}).values())
    for name, info in result["datasets"].items():
        try:
            dataset_version_record(
                project=job.run.project,
                name=name,
                description=info,
                path=info["path"],
                profile=info.get("profile"),
                run=job.run,
                job=job,
                synthetic=synthetic,
                actor=f"job:{job.pk}",
            )
        except Exception:
            # After commit: the job's outcome stands; the other receivers still run.
            logger.exception("Could not record dataset %s produced by job %s", name, job.pk)


def connect() -> None:
    """Called once from ``TrainingConfig.ready``."""
    job_setup.connect(datasets_setup, sender=Job, dispatch_uid="training.datasets_setup")
    job_script_succeeded.connect(
        datasets_produced, sender=Job, dispatch_uid="training.datasets_produced"
    )
    job_finished.connect(datasets_record, sender=Job, dispatch_uid="training.datasets_record")
