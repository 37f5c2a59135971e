"""The step cache (Kubeflow-style, content-addressed) and retry from the failed step.

Every job gets a key: sha256 over what it computes from — its own spec, the Git trees of its
``inputs`` at the run's commit, the run's parameters, the project's variables (secret ones by
name only) and the digests of what its upstream jobs produced. A job with ``step_cache`` whose
key matches an earlier succeeded job of the project does not run: that job's artifacts are
linked into its folder and its result copied. A re-run of a failed (or canceled) run looks the
same key up in the run it re-runs, for every job, so only the failed job and the ones after it
run again. See docs/caching.md.

The executor calls :class:`StepCache` and records ``cache_key``/``cached_from`` through
``services.job_finish``; nothing here writes a row.
"""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.core.digest import file_sha256

from . import git
from .artifacts import bundle_store_path
from .choices import JobStatus, RunStatus
from .logs import LogWriter
from .models import Artifact, Job

#: Bump when what goes into the key changes, so old keys stop matching.
KEY_VERSION = 1

#: Options that change when, where or how fast a job runs, not what it computes.
NOT_IN_KEY = frozenset({"when", "resources", "cache", "step_cache"})

#: A re-run of a run that ended so re-uses the steps that succeeded in it; a re-run of a
#: succeeded run runs everything again (the person asked for it).
RESUMABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELED})

#: How many earlier jobs with the key are looked at for one whose files are all still there.
CANDIDATES = 5


class CacheHit(Exception):  # noqa: N818 — control flow, not an error
    """Raised inside the executor's job body when the job is served from the cache."""

    def __init__(self, result: dict[str, Any], artifacts: list[Artifact]) -> None:
        super().__init__("served from the step cache")
        self.result, self.artifacts = result, artifacts


def key_digest(material: dict[str, Any]) -> str:
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def result_digests(result: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The content digests in a job's result (``bundle_digest``, ``model.digest``, a produced
    dataset's ``fingerprint``, …) by their dotted path: what a downstream key sees of it. The
    rest (test timings, log-ish figures) would change the key on every run."""
    found: dict[str, str] = {}
    for name, value in (result or {}).items():
        if not prefix and name == "cache":
            continue
        path = f"{prefix}{name}"
        if isinstance(value, dict):
            found.update(result_digests(value, f"{path}."))
        elif isinstance(value, str) and (name.endswith("digest") or name == "fingerprint"):
            found[path] = value
    return found


def upstream_outputs(job: Job) -> dict[str, Any]:
    """What the jobs it needs left: status, artifacts (path, sha256) and result digests. An
    upstream cache hit has the same artifacts and result as its source, so the same digests."""
    if not job.needs:
        return {}
    upstream = job.run.jobs.filter(name__in=list(job.needs)).prefetch_related("artifacts")
    return {
        up.name: {
            "status": up.status,
            "artifacts": [[a.path, a.sha256] for a in up.artifacts.all()],
            "digests": result_digests(up.result),
        }
        for up in upstream
    }


def input_trees(job: Job) -> dict[str, str | None]:
    """The Git object ids of the job's ``inputs`` at the run's commit (default: the root tree,
    ``""``); a path the commit lacks is None — part of the key, not an error."""
    run = job.run
    if not run.commit_sha or not run.project.repository_url:
        return {}
    paths = sorted({str(p) for p in job.options.get("inputs") or [""]})
    return git.tree_ids(run.project, run.commit_sha, paths)


def key_material(job: Job, variables: dict[str, str], secrets: list[str]) -> dict[str, Any]:
    options = {k: v for k, v in job.options.items() if k not in NOT_IN_KEY}
    hidden = set(secrets)
    return {
        "v": KEY_VERSION,
        "spec": {
            "kind": job.kind,
            "script": job.script,
            "image": job.image,
            "runner": job.runner,
            "options": options,
        },
        "inputs": input_trees(job),
        "params": job.run.params or {},
        # A secret's value stays out of the key (it would be stored next to the rest of the
        # material); rotating it does not re-run cached steps.
        "variables": {k: (None if v in hidden else v) for k, v in sorted(variables.items())},
        "upstream": upstream_outputs(job),
    }


def file_digest(path: Path) -> str | None:
    return file_sha256(path) if path.is_file() else None


def outputs_present(job: Job) -> bool:
    """Every artifact file of ``job`` is still there (same size), and its bundle if it made one."""
    for artifact in job.artifacts.all():
        try:
            if artifact.file_path.stat().st_size != artifact.size:
                return False
        except OSError:
            return False
    digest = (job.result or {}).get("bundle_digest")
    if digest:
        try:
            return bundle_store_path(digest).is_file()
        except ValueError:
            return False
    return True


def find_source(job: Job, key: str, *, project_wide: bool) -> Job | None:
    """An earlier succeeded job with ``key`` whose outputs are all there, newest first; only
    in the run this one re-runs unless ``project_wide`` (the step cache)."""
    jobs = Job.objects.filter(
        cache_key=key, status=JobStatus.SUCCEEDED, run__project_id=job.run.project_id
    ).exclude(pk=job.pk)
    if not project_wide:
        jobs = jobs.filter(run_id=job.run.rerun_of_id)
    for candidate in (
        jobs.select_related("run").prefetch_related("artifacts").order_by("-id")[:CANDIDATES]
    ):
        if outputs_present(candidate):
            return candidate
    return None


def reuse(job: Job, source: Job, key: str) -> tuple[dict[str, Any], list[Artifact]]:
    """The source's artifact files hard-linked (copied across file systems) into the job's
    folder, unsaved Artifact rows with the same sha256, and its result marked as a hit."""
    dest_root = Path(settings.ARTIFACT_DIR) / str(job.run_id) / str(job.pk)
    shutil.rmtree(dest_root, ignore_errors=True)
    artifacts = []
    for artifact in source.artifacts.all():
        target = dest_root / artifact.path
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(artifact.file_path, target)
        except OSError:
            shutil.copyfile(artifact.file_path, target)
        artifacts.append(
            Artifact(job=job, path=artifact.path, size=artifact.size, sha256=artifact.sha256)
        )
    result = {k: v for k, v in (source.result or {}).items() if k != "cache"}
    result["cache"] = {"hit": True, "run": source.run.number, "job": source.name, "key": key}
    return result, artifacts


class StepCache:
    """One job's way through the cache in the executor: for a job that may be served
    (``cache: true``, or a re-run of a failed run), :meth:`before_checkout` computes the key (a
    few queries and one git process) and serves a hit before anything is checked out; any
    other job is keyed after its script (:meth:`key_later`);
    a job that consumes datasets is keyed and served after :meth:`after_setup`, once the
    ``job_setup`` receivers placed them (their bytes are in the key). Serving raises
    :class:`CacheHit`; ``key`` and ``source`` are what ``job_finish`` records."""

    def __init__(self, *, job: Job, variables: dict[str, str], secrets: list[str], log: LogWriter):
        self.job, self.variables, self.secrets, self.log = job, variables, secrets, log
        self.key = ""
        self.source: Job | None = None
        self._material: dict[str, Any] | None = None
        self._consumed: dict[str, str | None] | None = None

    @property
    def step_cache(self) -> bool:
        # A gate compares with the champion of the moment, which is not in the key.
        return bool(self.job.options.get("step_cache")) and not self.job.options.get("gate")

    @property
    def resumes(self) -> bool:
        run = self.job.run
        return run.rerun_of_id is not None and run.rerun_of.status in RESUMABLE

    @property
    def looks_up(self) -> bool:
        """Whether this attempt may be served from the cache. A retry (attempt 2 on) always
        runs the script: that is how a person forces a miss."""
        return self.job.attempt == 1 and (self.step_cache or self.resumes)

    def _key_material(self) -> dict[str, Any] | None:
        try:
            return key_material(self.job, self.variables, self.secrets)
        except (git.GitError, subprocess.TimeoutExpired) as exc:
            self.log.line(f"step cache: no key ({exc}); the job runs")
            return None

    def before_checkout(self) -> None:
        if not self.looks_up:
            return  # keyed by key_later(), after the script: off the way to its first command
        self._material = self._key_material()
        if self._material is not None and not self.job.options.get("consumes"):
            self._serve(self._material)

    def after_setup(self, workspace: Path) -> None:
        if not self.job.options.get("consumes"):
            return
        # Before the script, which may change the files it was given.
        self._consumed = {
            name: file_digest(workspace / str(path))
            for name, path in sorted(self.job.options["consumes"].items())
        }
        if self._material is not None:
            self._serve({**self._material, "consumes": self._consumed})

    def key_later(self) -> None:
        """The key of a job that was not looked up, for the runs after it (a re-run of a failed
        run looks its succeeded jobs up by key). Its inputs are what they were before the
        script: the commit's trees, the upstream outputs and the consumed files' digests."""
        if self.key:
            return
        material = self._material or self._key_material()
        if material is None:
            return
        if self._consumed is not None:
            material = {**material, "consumes": self._consumed}
        self.key = key_digest(material)

    def _serve(self, material: dict[str, Any]) -> None:
        self.key = key_digest(material)
        source = find_source(self.job, self.key, project_wide=self.step_cache)
        if source is None:
            self.log.line(f"step cache: miss (key {self.key[:16]}…)")
            return
        try:
            result, artifacts = reuse(self.job, source, self.key)
        except OSError as exc:  # a file went away meanwhile: run the job instead
            self.log.line(f"step cache: could not reuse run #{source.run.number} ({exc})")
            return
        self.source = source
        self.log.line(
            f"cached from run #{source.run.number}, job {source.name} (key {self.key[:16]}…): "
            f"{len(artifacts)} artifact(s) reused, script not run"
        )
        raise CacheHit(result, artifacts)
