"""Run one claimed job on this worker: checkout, cache, scrubbed environment, log, heartbeats,
then what the job's kind adds (reproducibility check, bundle) and its reports and artifacts.

Called by the ``pipelines.run_job`` task after :func:`services.job_claim` succeeded.
"""

import logging
import os
import shlex
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from apps.core.database import retry_while_unavailable
from apps.core.storage import disk_full_message, is_disk_full
from apps.projects.selectors import job_variables

from . import cache, git, orphans, routing, services
from .artifacts import bundle_store_path
from .builder import BuildError, build_image
from .choices import JobKind, JobStatus
from .logs import LogWriter, log_path
from .models import Artifact, Job
from .outputs import artifacts_collect, bundle_build, wants_image
from .resources import job_resources
from .runners import RunOutcome, RunRequest, get_runner
from .series import METRICS_LOG, MetricsTail
from .signals import JobStepError, job_script_succeeded, job_setup
from .workspace import (
    OUTPUT_DIR,
    RUNNER_WORKSPACE,
    JobSetupError,
    cache_restore,
    cache_save,
    inside,
)

logger = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def metrics_log_path(job: Job, workspace: Path) -> str:
    """``$CONTROLPLANE_METRICS_LOG`` as the script sees it: in the workspace's OUTPUT_DIR."""
    root = RUNNER_WORKSPACE.get(job.runner, str(workspace))
    return f"{root}/{OUTPUT_DIR}/{METRICS_LOG}"


def job_environment(
    job: Job, variables: dict[str, str], workspace: Path | None = None
) -> dict[str, str]:
    """What a job sees: a few harmless host variables, the CI variables, the project's, and
    (given its workspace) ``CONTROLPLANE_METRICS_LOG``, the file it appends series points to.

    The worker's own environment (DATABASE_URL, DJANGO_SECRET_KEY, broker URLs, keys) is
    never passed on.
    """
    env = {k: os.environ[k] for k in settings.JOB_ENV_PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    run = job.run
    env.update(
        {
            "CI": "true",
            "CONTROLPLANE": "true",
            "CONTROLPLANE_PROJECT": run.project.slug,
            "CONTROLPLANE_RUN_NUMBER": str(run.number),
            "CONTROLPLANE_JOB_NAME": job.name,
            "CONTROLPLANE_JOB_KIND": job.kind,
            "CONTROLPLANE_JOB_ATTEMPT": str(job.attempt),
            "CONTROLPLANE_COMMIT_SHA": run.commit_sha,
            "CONTROLPLANE_REF": run.ref,
        }
    )
    if workspace is not None:
        env["CONTROLPLANE_METRICS_LOG"] = metrics_log_path(job, workspace)
    env.update(variables)
    env.update({str(k): str(v) for k, v in job.options.get("variables", {}).items()})
    # The run's parameters (validated against the spec's `params`) as PARAM_<NAME>.
    env.update({f"PARAM_{name.upper()}": _param_value(v) for name, v in run.params.items()})
    return env


def _param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _script(job: Job, workspace: Path) -> list[str]:
    """The commands the runner executes: the job's script plus what its kind adds."""
    script = list(job.script)
    if job.kind == JobKind.REPRODUCIBILITY:
        (workspace / OUTPUT_DIR).mkdir(exist_ok=True)
        command = job.options["command"].format(
            input=job.options["input"], output=f"{OUTPUT_DIR}/predictions.csv"
        )
        script.append(command)
    return script


def _in_image(job: Job, workspace: Path, log: LogWriter) -> dict | None:
    """A reproducibility job with ``in_image: <build job>`` runs its command inside the image
    that job built, in the image's working directory (the shipped code, model and
    dependencies), with the checkout mounted at /workspace for the input and the output.

    Returns None (a normal job), ``{"build", "image", "script"}``, or ``{"build", "reason"}``
    when the build made no image (no environment deploys images and CONTROLPLANE_BUILD_IMAGES
    is off)."""
    name = job.options.get("in_image")
    if job.kind != JobKind.REPRODUCIBILITY or not name:
        return None
    build = job.run.jobs.filter(name=name).first()
    image = ((build.result or {}).get("image") or {}).get("id") if build else None
    if not image:
        return {
            "build": name,
            "reason": f"the build job '{name}' made no image (no environment deploys images "
            "and CONTROLPLANE_BUILD_IMAGES is off)",
        }
    if "docker" not in settings.RUNNERS_ALLOWED:
        raise JobSetupError("in_image needs the docker runner, which this worker does not allow.")
    from docker.client import from_env
    from docker.errors import DockerException

    client = None
    try:
        client = from_env()
        workdir = client.images.get(image).attrs["Config"].get("WorkingDir") or "/"
    except DockerException as exc:
        raise JobSetupError(
            f"The image of '{name}' ({image[:19]}) is not available: {exc}"
        ) from None
    finally:
        if client is not None:
            client.close()
    (workspace / OUTPUT_DIR).mkdir(exist_ok=True)
    command = job.options["command"].format(
        input=shlex.quote(f"/workspace/{job.options['input']}"),
        output=f"/workspace/{OUTPUT_DIR}/predictions.csv",
    )
    log.line(f"running the predict command in the image {image[:19]} (in {workdir})")
    script = [*job.script, f"cd {shlex.quote(workdir)} && {command}"]
    return {"build": name, "image": image, "script": script}


def _model_from_build(job: Job, workspace: Path, in_image: dict | None, log: LogWriter):
    """The model a reproducibility job checks is the one its ``needs`` build job bundled: put
    at the path the build declared (``model:``), its digest checked against the build's.
    In an image it is already there (the image is built from that bundle). None: no build it
    needs made a model."""
    if job.kind != JobKind.REPRODUCIBILITY:
        return None
    builds = {b.name: b for b in job.run.jobs.filter(name__in=job.needs, kind=JobKind.BUILD)}
    names = [n for n in job.needs if n in builds and (builds[n].result or {}).get("model")]
    if in_image and in_image.get("image"):  # the model in that image, not another build's
        names = [n for n in names if n == in_image["build"]]
    if not names:
        return None
    build = builds[names[0]]
    model = build.result["model"]
    handed = {"digest": model["digest"], "path": model["path"], "build_job": build.name}
    if in_image and in_image.get("image"):
        return {**handed, "in_image": True}
    from .reproducibility import ModelHandoffError, extract_model

    try:
        extract_model(
            bundle_store_path(build.result["bundle_digest"]),
            model["path"],
            inside(workspace, model["path"]),
            digest=model["digest"],
        )
    except (ModelHandoffError, ValueError) as exc:
        raise JobSetupError(f"The model of '{build.name}' was not handed over: {exc}") from None
    log.line(f"model {model['path']} from '{build.name}': {model['digest']}")
    return handed


def _check_reproducibility(job: Job, workspace: Path, log: LogWriter) -> tuple[dict, str]:
    from .reproducibility import compare_predictions, format_report

    opts = job.options
    actual = workspace / OUTPUT_DIR / "predictions.csv"
    if not actual.is_file():
        return {}, "The predict command wrote no output file."
    result = compare_predictions(
        inside(workspace, opts["expected"]),
        actual,
        tolerance=float(opts.get("tolerance", 1e-6)),
        key=opts.get("key"),
    )
    log.line(result.reason)
    if not result.passed and result.examples:
        log.write((format_report(result) + "\n").encode())
    return {"reproducibility": result.to_dict()}, "" if result.passed else result.reason


def _reports(job: Job, workspace: Path, log: LogWriter) -> dict:
    junit = job.options.get("reports", {}).get("junit")
    if not junit:
        return {}
    from .reports import parse_junit

    path = inside(workspace, junit)
    if not path.is_file():
        log.line(f"JUnit report {junit} was not written")
        return {}
    try:
        summary = parse_junit(path)
    except Exception as exc:  # a broken report must not hide the job's own outcome
        log.line(f"JUnit report {junit} could not be read: {exc}")
        return {}
    return {"junit": summary.to_dict()}


def execute_job(
    job: Job,
    *,
    take: Callable[[Job], bool] | None = None,
    later: list[Callable[[], None]] | None = None,
) -> Job:
    """Run the claimed ``job`` and record its outcome; returns the finished job. ``take``:
    see :func:`services.job_finish` (the finished job's ``taken`` is the next one to run).
    ``later``: the bookkeeping left after the outcome (the step-cache key of a job that was
    not looked up) is appended there for the caller to do after the jobs it runs next,
    instead of being done before this returns."""
    worker = job.worker
    run, project = job.run, job.run.project
    # A run in an environment (a schedule of it) gets that environment's variables too; only
    # a run of a protected ref gets the protected ones (docs/secrets.md).
    variables, secrets = job_variables(
        project=project, environment=run.environment, protected=run.protected
    )
    workspace = Path(settings.WORKSPACE_DIR) / "jobs" / f"job-{job.pk}"
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.parent.mkdir(parents=True, exist_ok=True)
    log = LogWriter(log_path(job.pk, job.run_id), secrets=secrets)
    if job.attempt > 1:
        log.line(f"attempt {job.attempt} of {job.max_attempts}")
    _end_leftovers(job, log)
    recorder = _recorder(job, worker)
    log.line(f"job {job.name} ({job.kind}) on {worker}, runner {job.runner}")
    cancel, stop = threading.Event(), threading.Event()
    log.on_full = cancel.set  # a log that cannot be written: the runner stops the job
    if log.full:
        cancel.set()
    series = MetricsTail(job_id=job.pk, path=workspace / OUTPUT_DIR / METRICS_LOG, log=log)
    heartbeat = threading.Thread(
        target=_heartbeat_loop, args=(job.pk, worker, log, cancel, stop, series), daemon=True
    )
    heartbeat.start()
    outcome: RunOutcome | None = None
    error = ""
    result: dict[str, Any] = {}
    artifacts: list[Artifact] = []
    step_cache = cache.StepCache(job=job, variables=variables, secrets=secrets, log=log)
    try:
        note = routing.route(kind=job.kind, options=job.options).note  # why this queue
        if note:
            log.line(note)
        if job.runner not in settings.RUNNERS_ALLOWED:
            raise JobSetupError(f"Runner '{job.runner}' is not allowed on this worker.")
        step_cache.before_checkout()  # a hit raises CacheHit: no checkout, no script
        started = time.monotonic()
        if run.commit_sha and project.repository_url:
            git.checkout_commit(project, run.commit_sha, workspace)
            log.line(f"checked out {run.commit_sha[:12]} in {time.monotonic() - started:.2f}s")
        else:
            workspace.mkdir(parents=True)
        cache_restore(job, workspace, log)
        (workspace / OUTPUT_DIR).mkdir(exist_ok=True)
        env = job_environment(job, variables, workspace)
        job_setup.send(sender=Job, job=job, workspace=workspace, log=log, env=env)
        step_cache.after_setup(workspace)  # keyed by the datasets it consumes
        runner, image, script = job.runner, job.image, _script(job, workspace)
        in_image = _in_image(job, workspace, log)
        if in_image is None:
            pass
        elif in_image.get("image"):
            runner, image, script = "docker", in_image["image"], in_image["script"]
        else:  # nothing to check: say so on the job, do not pretend it passed a check
            reason = in_image["reason"]
            result["in_image"] = {"checked": False, "status": "skipped", "reason": reason}
            log.line(f"skipped, not checked in an image: {reason}")
        model = None if "in_image" in result else _model_from_build(job, workspace, in_image, log)
        if "in_image" in result:
            outcome = RunOutcome(exit_code=0)
        else:
            outcome = get_runner(runner).run(
                RunRequest(
                    script=script,
                    workspace=workspace,
                    env=env,
                    timeout=job.timeout_seconds,
                    log=log,
                    cancel=cancel,
                    image=image,
                    resources=job_resources(job.options),
                    secrets=tuple(secrets),
                    project_id=project.pk,
                    run_id=run.pk,
                    job_id=job.pk,
                    started=recorder,
                )
            )
        if outcome.error:
            error = outcome.error
        elif outcome.timed_out:
            error = f"Timed out after {job.timeout_seconds}s."
        elif outcome.canceled:
            error = "Canceled."
        elif outcome.exit_code != 0:
            error = f"Exited with code {outcome.exit_code}."
        if not outcome.canceled:
            result.update(_reports(job, workspace, log))
            if not error and job.kind == JobKind.REPRODUCIBILITY and "in_image" not in result:
                extra, error = _check_reproducibility(job, workspace, log)
                result.update(extra)
                if in_image and "reproducibility" in extra:
                    extra["reproducibility"]["image"] = in_image["image"]
                if model and "reproducibility" in extra:
                    extra["reproducibility"]["model"] = model
            if not error and "in_image" not in result:
                result.update(
                    _after_script(job, workspace, log, env, runner, image, cancel, recorder)
                )
            # A train job bundles the code with its model as a build job does: a release
            # made from its gate's pass deploys that bundle (training described the model).
            if not error and job.kind in (JobKind.BUILD, JobKind.TRAIN):
                with_model = job.kind == JobKind.BUILD
                result.update(bundle_build(job, workspace, log, with_model=with_model))
                if wants_image(project):
                    result.update(
                        build_image(
                            job=job,
                            bundle=workspace / OUTPUT_DIR / "bundle.tar.gz",
                            bundle_digest=result["bundle_digest"],
                            log=log,
                            model=result.get("model"),
                        )
                    )
            artifacts = artifacts_collect(job, workspace, log)
            cache_save(job, workspace)
    except cache.CacheHit as hit:
        result, artifacts = hit.result, hit.artifacts
    except (JobSetupError, JobStepError, git.GitError, BuildError, JobTakenAway) as exc:
        error = str(exc)
    except Exception as exc:
        if is_disk_full(exc):  # a volume other than the log's and the artifacts' (the workspace)
            error = disk_full_message(exc.filename or "a file", exc)
        else:
            logger.exception("Job %s crashed in the executor", job.pk)
            error = f"Runner error: {exc}"
    finally:
        stop.set()
        heartbeat.join(timeout=5)
        try:  # the points logged since the last beat, before the outcome (and the model) is in
            series.flush(final=True)
        except Exception:
            logger.exception("Reading the metrics log of job %s failed", job.pk)
    if log.full:  # the job was stopped because its log could not be written: say why
        error = log.full
    skipped = result.get("in_image", {}).get("status") == "skipped"
    log.line(error or ("job skipped" if skipped else "job succeeded"))
    log.close()
    try:
        # The database may be restarting: the outcome is kept and recorded once it is back,
        # for as long as the reaper would still count this worker alive (apps/core/database.py).
        finished = retry_while_unavailable(
            lambda: services.job_finish(
                job_id=job.pk,
                worker=worker,
                succeeded=not error,
                # A check that checked nothing is skipped with its reason, never a green success.
                skipped=not error and result.get("in_image", {}).get("status") == "skipped",
                exit_code=outcome.exit_code if outcome else None,
                error_message=error,
                log_size=log.bytes_written,
                result=result,
                artifacts=artifacts,
                cache_key=step_cache.key,
                cached_from=step_cache.source,
                take=take,
            ),
            timeout=settings.JOB_HEARTBEAT_TIMEOUT.total_seconds(),
            what=f"Recording the outcome of job {job.pk}",
        )
        if not step_cache.key:
            # Keyed after the outcome is in: the next job is on its way meanwhile (or, when
            # this worker runs it itself, after it: ``later``).
            keying = _cache_key_later(step_cache, job.pk)
            if later is None:
                keying()
            else:
                later.append(keying)
        return finished
    finally:
        # After the outcome is recorded (the next job is on its way meanwhile); a worker that
        # dies first leaves the folder to the next attempt, which starts by removing it.
        shutil.rmtree(workspace, ignore_errors=True)


def _cache_key_later(step_cache: cache.StepCache, job_id: int) -> Callable[[], None]:
    def record() -> None:
        step_cache.key_later()
        if step_cache.key:
            services.job_cache_key_record(job_id=job_id, cache_key=step_cache.key)

    return record


def _after_script(job, workspace, log, env, runner, image, cancel, recorder) -> dict[str, Any]:
    """What the apps to the right add to a job whose script succeeded (``job_script_succeeded``:
    training registers models and runs the gate), each able to run more commands here."""

    def run_command(script: list[str], extra_env: dict[str, str] | None = None) -> RunOutcome:
        return get_runner(runner).run(
            RunRequest(
                script=script,
                workspace=workspace,
                env={**env, **(extra_env or {})},
                timeout=job.timeout_seconds,
                log=log,
                cancel=cancel,
                image=image,
                started=recorder,
            )
        )

    merged: dict[str, Any] = {}
    for _receiver, extra in job_script_succeeded.send(
        sender=Job, job=job, workspace=workspace, log=log, env=env, run_command=run_command
    ):
        merged.update(extra or {})
    return merged


class JobTakenAway(Exception):
    """The job stopped being this worker's (canceled, or found lost and handed on)."""


def _recorder(job: Job, worker: str):
    """``RunRequest.started``: record what the runner starts on the job before it runs."""

    recorded: dict = {}  # what this attempt started so far (its leftovers were ended first)

    def started(entry: dict, kind: str) -> None:
        nonlocal recorded
        recorded = orphans.processes_add(recorded, **{kind: entry})
        if not services.job_processes_record(job_id=job.pk, worker=worker, processes=recorded):
            raise JobTakenAway(f"job {job.pk} is no longer run by {worker}")

    return started


def _end_leftovers(job: Job, log: LogWriter) -> None:
    """A previous attempt whose worker died may still run (the reaper ends it first, but a job
    canceled or retried while its worker was gone comes here with it): end it before this
    attempt starts, so the job never runs twice at once."""
    if not job.processes:
        return
    ending = orphans.processes_end(job.processes)
    if ending.ended:
        log.line(f"ended what a previous attempt left running: {', '.join(ending.ended)}")
    if not ending.settled:
        log.line(f"a previous attempt may still run: {ending.describe()}")
    services.job_processes_clear(job_id=job.pk)


def _heartbeat_loop(job_id, worker, log, cancel, stop, series) -> None:
    interval = settings.JOB_HEARTBEAT_INTERVAL
    while not stop.wait(interval):
        try:
            status = services.job_heartbeat(
                job_id=job_id, worker=worker, log_size=log.bytes_written
            )
        except Exception:
            logger.exception("Heartbeat of job %s failed; will retry", job_id)
            continue
        finally:
            close_old_connections()
        if status == JobStatus.CANCELED:
            cancel.set()
        try:
            series.flush()
        except Exception:
            logger.exception("Reading the metrics log of job %s failed; will retry", job_id)
        finally:
            close_old_connections()
    connection.close()  # this thread's own connection
