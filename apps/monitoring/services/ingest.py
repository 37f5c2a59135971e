"""Ingest: the tokens deployed services post with, recording a parsed batch of observations or
labels (one Parquet file and its row), and the daily prune of what is older than the retention.

A batch is written as a file first and its row second; when the row cannot be written the file
is deleted, so nothing of a refused batch stays. Batches are not audited one by one (a service
posts many a minute): the row is the record. Tokens are audited; prunes are logged.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import hash_token
from apps.core.exceptions import ServiceError
from apps.core.services import audit_log
from apps.projects.models import Environment, Variable
from apps.projects.services import variable_set
from apps.releases.choices import DeploymentStatus
from apps.releases.models import Deployment
from apps.training.models import ModelVersion

from .. import store
from ..ingest import Batch, Expected, IngestError
from ..models import IngestToken, LabelBatch, ObservationBatch
from ..reference import ReferenceError, reference_for

logger = logging.getLogger(__name__)

TOKEN_VARIABLE = "CONTROLPLANE_INGEST_TOKEN"  # noqa: S105 - a variable's name
URL_VARIABLE = "CONTROLPLANE_INGEST_URL"
DEPLOY_TOKEN_NAME = "deployments"  # noqa: S105 - the auto-created token's name


# --- tokens -----------------------------------------------------------------------------------


def ingest_token_create(
    *, environment: Environment, name: str, actor: Any
) -> tuple[IngestToken, str]:
    """A new ingest token for ``environment``; the raw value is returned this once only."""
    name = (name or "").strip()
    if not name:
        raise ServiceError("A token needs a name.")
    raw = IngestToken.generate()
    with transaction.atomic():
        token = IngestToken.objects.create(
            environment=environment,
            name=name[:100],
            key_hash=hash_token(raw),
            prefix=raw[:12],
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        audit_log(
            actor=actor,
            action="ingest_token.created",
            obj=token,
            project_id=environment.project_id,
            data={"environment_id": environment.pk, "name": token.name},
        )
    return token, raw


@transaction.atomic
def ingest_token_revoke(*, token: IngestToken, actor: Any) -> IngestToken:
    """Revoke at once: the token posts nothing from now on (403)."""
    token = IngestToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_log(
        actor=actor,
        action="ingest_token.revoked",
        obj=token,
        project_id=token.environment.project_id,
        data={"environment_id": token.environment_id, "name": token.name},
    )
    return token


def ingest_url(environment: Environment) -> str:
    return f"{settings.SITE_URL}/api/v1/environments/{environment.pk}/observations/"


@transaction.atomic
def ingest_token_ensure(*, environment: Environment, actor: Any = "deployer") -> bool:
    """Before a deployment starts its service: the environment's variables hold a working
    ingest token (a secret, so masked and passed like the others) and the URL to post to.
    A token that was revoked or a variable that was edited is replaced. True: something
    changed."""
    Environment.objects.select_for_update().filter(pk=environment.pk).first()
    changed = False
    current = Variable.objects.filter(
        project_id=environment.project_id, environment=environment, key=TOKEN_VARIABLE
    ).first()
    valid = (
        current is not None
        and IngestToken.objects.filter(
            environment=environment,
            key_hash=hash_token(current.value),
            revoked_at__isnull=True,
        ).exists()
    )
    if not valid:
        _token, raw = ingest_token_create(
            environment=environment, name=DEPLOY_TOKEN_NAME, actor=actor
        )
        variable_set(
            project=environment.project,
            environment=environment,
            key=TOKEN_VARIABLE,
            value=raw,
            is_secret=True,
            actor=actor,
        )
        changed = True
    url = ingest_url(environment)
    existing_url = Variable.objects.filter(
        project_id=environment.project_id, environment=environment, key=URL_VARIABLE
    ).first()
    if existing_url is None or existing_url.value != url:
        variable_set(
            project=environment.project,
            environment=environment,
            key=URL_VARIABLE,
            value=url,
            actor=actor,
        )
        changed = True
    return changed


# --- what a batch may hold --------------------------------------------------------------------

_CACHE_SECONDS = 30.0
_cache: dict[tuple[int, int | None], tuple[float, Expected]] = {}
_cache_lock = threading.Lock()


def expected_for(*, environment: Environment, model_version_id: int | None) -> Expected:
    """The features a batch for this model version may hold (from its reference), or, with no
    reference to build, anything (kinds inferred). A model version that never served this
    environment is refused. Kept for 30 s per process: a service posts often."""
    key = (environment.pk, model_version_id)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < _CACHE_SECONDS:
        return hit[1]
    model_version = None
    if model_version_id is not None:
        model_version = ModelVersion.objects.filter(
            pk=model_version_id, project_id=environment.project_id
        ).first()
        served = (
            model_version is not None
            and Deployment.objects.filter(
                environment=environment,
                status=DeploymentStatus.SUCCEEDED,
                release__model_version_id=model_version_id,
            ).exists()
        )
        if not served:
            raise IngestError(
                f"model version {model_version_id} never served {environment.name} "
                "(no succeeded deployment of a release with it)",
                column="model_version",
            )
    try:
        # Built on the monitor queue when the deployment succeeded (receivers.reference_prepare);
        # a batch that comes first builds it here.
        reference = reference_for(environment, model_version)
    except ReferenceError as exc:
        # The data must not be lost because the reference cannot be built now; the check
        # reports the reference's problem.
        logger.warning("No reference for %s / %s: %s", environment, model_version_id, exc)
        reference = None
    if reference is None:
        expected = Expected(strict=False)
    else:
        columns = dict(reference.columns)
        prediction = columns.pop(reference.prediction, None) if reference.prediction else None
        expected = Expected(features=columns, prediction=prediction, strict=True)
    with _cache_lock:
        _cache[key] = (now, expected)
    return expected


def expected_cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


# --- recording --------------------------------------------------------------------------------


def observations_record(*, environment: Environment, batch: Batch) -> ObservationBatch:
    """Store a parsed batch: its file, then its row (the file is removed if the row fails)."""
    window_start = store.window_of(batch.first_at)
    rel, size = store.write_table(
        environment_id=environment.pk,
        what="observations",
        window_start=window_start,
        table=batch.table,
    )
    try:
        return ObservationBatch.objects.create(
            environment=environment,
            model_version_id=batch.model_version_id,
            window_start=window_start,
            first_at=batch.first_at,
            last_at=batch.last_at,
            rows=batch.rows,
            path=rel,
            size_bytes=size,
        )
    except BaseException:
        store.delete_file(rel)
        raise


def labels_record(*, environment: Environment, table, at: datetime | None = None) -> LabelBatch:
    at = at or timezone.now()
    window_start = store.window_of(at)
    rel, size = store.write_table(
        environment_id=environment.pk, what="labels", window_start=window_start, table=table
    )
    try:
        return LabelBatch.objects.create(
            environment=environment,
            window_start=window_start,
            rows=table.num_rows,
            path=rel,
            size_bytes=size,
            received_at=at,
        )
    except BaseException:
        store.delete_file(rel)
        raise


# --- retention --------------------------------------------------------------------------------

_PRUNE_CHUNK = 1000


def observations_prune(*, now: datetime | None = None) -> dict[str, int]:
    """Delete observation batches whose latest row, and label batches received, before the
    retention (``OBSERVATION_RETENTION_DAYS``): files first, then rows (a reader tolerates a
    file that went missing), in chunks. Then files in old window folders that no row names
    (a crash between file and row) and the folders left empty."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.OBSERVATION_RETENTION_DAYS)
    counts = {"observation_batches": 0, "label_batches": 0, "orphan_files": 0}
    for model, field, key in (
        (ObservationBatch, "last_at", "observation_batches"),
        (LabelBatch, "received_at", "label_batches"),
    ):
        while True:
            chunk = list(
                model.objects.filter(**{f"{field}__lt": cutoff}).values_list("pk", "path")[
                    :_PRUNE_CHUNK
                ]
            )
            if not chunk:
                break
            for _pk, rel in chunk:
                store.delete_file(rel)
            model.objects.filter(pk__in=[pk for pk, _ in chunk]).delete()
            counts[key] += len(chunk)
    counts["orphan_files"] = _prune_orphans(cutoff)
    if counts["observation_batches"] or counts["label_batches"] or counts["orphan_files"]:
        logger.info("Pruned observations older than %s: %s", cutoff.isoformat(), counts)
    return counts


def _prune_orphans(cutoff: datetime) -> int:
    root = Path(settings.OBSERVATION_DIR)
    if not root.is_dir():
        return 0
    removed = 0
    # A window folder can still hold live batches (a batch is filed under its first row's
    # window but lives until its last row is old): only files no row names are removed.
    for folder in root.glob("*/*/*"):
        what = folder.parent.name
        if what not in ("observations", "labels") or not folder.is_dir():
            continue
        try:
            start = datetime.strptime(folder.name, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            continue
        if start >= cutoff - timedelta(seconds=store.window_seconds()):
            continue
        model = ObservationBatch if what == "observations" else LabelBatch
        files = {
            f"{folder.parent.parent.name}/{what}/{folder.name}/{p.name}": p
            for p in folder.iterdir()
        }
        known = set(model.objects.filter(path__in=list(files)).values_list("path", flat=True))
        for rel, path in files.items():
            if rel not in known:
                path.unlink(missing_ok=True)
                removed += 1
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: live batches
    return removed
