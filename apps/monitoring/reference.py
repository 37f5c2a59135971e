"""What "no drift" looks like for one model version in one environment: a ``Reference`` row and
its Parquet file, built once from

- the spec's ``monitor.reference`` (a CSV or Parquet file in the repository, at the commit of
  the release serving the model version there), when the spec names one; else
- the model version's training data (lineage: the ``trained_on`` dataset version's stored file).

The columns are the spec's ``monitor.features`` (default: every column but the target and the
prediction), each numeric or categorical: inferred from the data (the drift engine's
``infer_kind``, Evidently's rule: integers with at most 10 distinct values are categorical),
or as ``monitor.columns.<name>.kind`` says. The row is reused while its inputs
are the same: its ``fingerprint`` is the SHA-256 of the source's identity (the dataset
version's fingerprint, or the file's git blob id) and of the column settings, so a changed
setting or file is a new reference and an unchanged one costs a query.

The spec's schema is not this module's (docs/monitoring.md): the ``monitor`` block is read
from the stored spec dict defensively, keys it does not know ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from django.db import IntegrityError, transaction

from apps.core.exceptions import ServiceError
from apps.core.services import audit_log
from apps.pipelines import git
from apps.projects.models import Environment
from apps.releases.choices import DeploymentStatus
from apps.releases.models import Deployment
from apps.training import datafiles
from apps.training.models import DatasetVersion, ModelVersion

from . import store
from .choices import ColumnKind, ReferenceSource
from .drift import infer_kind
from .models import Reference

logger = logging.getLogger(__name__)

# The reference keeps at most this many rows of its source (the first ones).
MAX_ROWS = 1_000_000
MAX_FILE_BYTES = 1 << 30
FORMAT_VERSION = 1  # bump when the way a reference is built changes: a new fingerprint


class ReferenceError(ServiceError):
    """The reference's source exists but cannot be used (the message says why)."""


# --- the spec ---------------------------------------------------------------------------------


def serving_deployment(environment: Environment, model_version: ModelVersion | None):
    """The latest succeeded deployment of ``environment`` whose release carries
    ``model_version`` (any model version when None), or None."""
    qs = Deployment.objects.filter(environment=environment, status=DeploymentStatus.SUCCEEDED)
    if model_version is not None:
        qs = qs.filter(release__model_version=model_version)
    return qs.select_related("release__pipeline_run").order_by("-pk").first()


def monitor_settings(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """The spec's ``monitor`` block as written (``raw``) over the parsed one; {} when none."""
    if not isinstance(spec, Mapping):
        return {}
    parsed = spec.get("monitor")
    raw = spec.get("raw")
    raw = raw.get("monitor") if isinstance(raw, Mapping) else None
    merged: dict[str, Any] = {}
    for block in (parsed, raw):
        if isinstance(block, Mapping):
            merged.update(block)
    return merged


def _spec_and_commit(
    environment: Environment, model_version: ModelVersion | None
) -> tuple[dict[str, Any], str]:
    deployment = serving_deployment(environment, model_version)
    if deployment is not None:
        run = deployment.release.pipeline_run
        return (run.spec if run else {}) or {}, deployment.release.commit_sha
    if model_version is not None and model_version.pipeline_run_id:
        run = model_version.pipeline_run
        return run.spec or {}, model_version.commit_sha or run.commit_sha
    return {}, environment.pipeline_commit_sha


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _column_overrides(monitor: Mapping[str, Any]) -> dict[str, str]:
    columns = monitor.get("columns")
    if not isinstance(columns, Mapping):
        return {}
    kinds = {}
    for name, settings in columns.items():
        if isinstance(settings, Mapping) and settings.get("kind") in ColumnKind.values:
            kinds[str(name)] = settings["kind"]
    return kinds


def _features(monitor: Mapping[str, Any]) -> list[str]:
    features = monitor.get("features")
    if isinstance(features, list | tuple):
        return [str(f) for f in features if isinstance(f, str | int)]
    return []


# --- the source -------------------------------------------------------------------------------


def _lineage_dataset(model_version: ModelVersion | None) -> DatasetVersion | None:
    """The training data: a real (not synthetic) version first, then the largest."""
    if model_version is None:
        return None
    versions = list(model_version.trained_on.all())
    if not versions:
        return None
    versions.sort(key=lambda v: (v.synthetic, -(v.rows or 0), v.pk))
    return versions[0]


def _read_source(path: Path) -> pa.Table:
    try:
        description = datafiles.describe(path)
        batches = list(datafiles.read_batches(path, description, max_rows=MAX_ROWS))
    except (datafiles.DataFileError, OSError) as exc:
        raise ReferenceError(f"The reference data cannot be read: {exc}") from None
    if not batches:
        raise ReferenceError(f"The reference data {path.name} has no rows.")
    return pa.Table.from_batches(batches)


def _blob_to_file(environment: Environment, commit: str, name: str, dest: Path) -> None:
    with open(dest, "wb") as out:
        # Streamed to the file, never whole in memory; git from PATH, arguments as a list.
        result = subprocess.run(  # noqa: S603
            ["git", "cat-file", "blob", f"{commit}:{name}"],  # noqa: S607
            cwd=git.mirror_path(environment.project),
            env=git._env(),
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=600,
            check=False,
        )
    if result.returncode != 0:
        raise ReferenceError(f"{name} cannot be read at commit {commit[:12]}.")
    if dest.stat().st_size > MAX_FILE_BYTES:
        raise ReferenceError(f"{name} is larger than {MAX_FILE_BYTES >> 20} MiB.")


# --- building ---------------------------------------------------------------------------------


def _fingerprint(identity: str, features, target, prediction, kinds) -> str:
    key = json.dumps(
        {
            "v": FORMAT_VERSION,
            "source": identity,
            "features": features,
            "target": target,
            "prediction": prediction,
            "kinds": kinds,
            "max_rows": MAX_ROWS,
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()


def _as_kind(column: pa.ChunkedArray, kind: str, name: str) -> pa.ChunkedArray:
    t = column.type
    if pa.types.is_dictionary(t):
        column = column.cast(t.value_type)
        t = column.type
    if kind == ColumnKind.NUMERIC:
        if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
            return column.cast(pa.float64())
        try:
            return pc.cast(column, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ReferenceError(
                f"Column {name!r} is set to numeric but holds values that are not numbers."
            ) from None
    if pa.types.is_boolean(t):
        return pc.if_else(column, "true", "false")
    return column.cast(pa.string())


def build_table(
    source: pa.Table, monitor: Mapping[str, Any]
) -> tuple[pa.Table, dict[str, str], str, str]:
    """The reference's rows and kinds: (table, {column: kind}, target, prediction). The table
    holds the features, then the prediction and the target when the source has them."""
    target = _text(monitor.get("target"))
    prediction = _text(monitor.get("prediction")) or "prediction"
    names = source.column_names
    features = _features(monitor) or [c for c in names if c not in (target, prediction)]
    missing = [f for f in features if f not in names]
    if missing:
        raise ReferenceError(
            f"monitor.features names {', '.join(missing)}, which the reference data lacks "
            f"(it has {', '.join(names)})."
        )
    overrides = _column_overrides(monitor)
    kinds: dict[str, str] = {}
    arrays: dict[str, pa.ChunkedArray] = {}
    for name in [*features, *([prediction] if prediction in names else [])]:
        column = source.column(name)
        kind = overrides.get(name) or infer_kind(column.combine_chunks())
        kinds[name] = kind
        arrays[name] = _as_kind(column, kind, name)
    if target and target in names:
        column = source.column(target)
        arrays[target] = _as_kind(column, overrides.get(target) or infer_kind(column), target)
    return (
        pa.table(arrays),
        kinds,
        target if target in names else "",
        prediction if prediction in names else "",
    )


def reference_for(environment: Environment, model_version: ModelVersion | None) -> Reference | None:
    """The reference of ``model_version`` serving ``environment``: the existing row when its
    inputs are unchanged, else built now. None when there is nothing to build it from (no
    ``monitor.reference`` and no training data in the lineage). Raises ReferenceError when
    the source is there but unusable."""
    spec, commit = _spec_and_commit(environment, model_version)
    monitor = monitor_settings(spec)
    spec_path = _text(monitor.get("reference"))
    dataset_version = None
    if spec_path:
        if not commit:
            raise ReferenceError("No commit serves this environment to read the reference at.")
        try:
            blob = git.tree_ids(environment.project, commit, [spec_path]).get(spec_path)
        except (git.GitError, subprocess.TimeoutExpired) as exc:
            raise ReferenceError(f"The repository cannot be read: {exc}") from None
        if blob is None:
            raise ReferenceError(f"monitor.reference {spec_path} is not in commit {commit[:12]}.")
        identity, source_kind = f"git:{blob}:{Path(spec_path).suffix.lower()}", ReferenceSource.SPEC
    else:
        dataset_version = _lineage_dataset(model_version)
        if dataset_version is None:
            return None
        identity, source_kind = f"dataset:{dataset_version.fingerprint}", ReferenceSource.LINEAGE
    fingerprint = _fingerprint(
        identity,
        _features(monitor),
        _text(monitor.get("target")),
        _text(monitor.get("prediction")),
        _column_overrides(monitor),
    )
    existing = Reference.objects.filter(
        environment=environment, model_version=model_version, fingerprint=fingerprint
    ).first()
    if existing is not None:
        return existing

    with tempfile.TemporaryDirectory(prefix="reference-") as tmp:
        if spec_path:
            path = Path(tmp) / f"reference{Path(spec_path).suffix.lower()}"
            _blob_to_file(environment, commit, spec_path, path)
        else:
            path = Path(dataset_version.path)
            if not path.is_file():
                raise ReferenceError(f"The training data file {path} is gone.")
        table, kinds, target, prediction = build_table(_read_source(path), monitor)
    rel, _size = store.write_reference(environment_id=environment.pk, name=fingerprint, table=table)
    try:
        with transaction.atomic():
            reference = Reference.objects.create(
                environment=environment,
                model_version=model_version,
                source=source_kind,
                dataset_version=dataset_version,
                spec_path=spec_path,
                fingerprint=fingerprint,
                path=rel,
                rows=table.num_rows,
                columns=kinds,
                target=target,
                prediction=prediction,
            )
            audit_log(
                actor="monitoring",
                action="reference.created",
                obj=reference,
                project_id=environment.project_id,
                data={
                    "environment_id": environment.pk,
                    "model_version_id": model_version.pk if model_version else None,
                    "source": source_kind,
                    "rows": table.num_rows,
                },
            )
    except IntegrityError:
        # Another process built the same reference at the same time: same file, same row.
        return Reference.objects.get(
            environment=environment, model_version=model_version, fingerprint=fingerprint
        )
    return reference


def reference_table(reference: Reference) -> pa.Table:
    """The reference's rows (features, prediction, target)."""
    table = store.read_files([reference.path])
    if table is None:
        raise ReferenceError(f"The reference file {reference.path} is gone.")
    return table
