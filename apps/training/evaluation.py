"""What a ``kind: train`` job adds after its script succeeded, in the worker and the job's own
workspace (the ``job_script_succeeded`` receiver calls :func:`train_outcome`):

1. the model the spec names (``model:``) must exist and the metrics file (``metrics:``) must be a
   JSON object, else the job fails with a message naming the file;
2. the model's sha256, its metrics, params and tags go on ``job.result["model"]`` (the executor
   keeps the file as an artifact and bundles it with the code, as a build job does);
3. with a ``gate:``, the champion (the version aliased in the gate's environment) is placed at
   ``.controlplane/champion/<file>`` and the gate's ``evaluate`` command runs twice in this
   workspace, on the same data: once for the candidate, once for the champion; both metric sets
   and the decision (:mod:`apps.training.gate`) go on ``job.result["gate"]``.

A failing gate does not fail the job (it trained; the verdict says no). A gate that cannot
decide (the evaluate command fails, writes no metrics, the data is missing) fails the job: a
gate must never pass, or fail quietly, on a score it could not read.
"""

import json
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from apps.core.digest import file_sha256
from apps.pipelines.models import Job
from apps.pipelines.signals import JobStepError

from .gate import GateRule, compare, num
from .metricsfile import split_metrics
from .selectors import ModelFileError, champion_for, model_file_place

CHAMPION_DIR = ".controlplane/champion"
GATE_DIR = ".controlplane/gate"


def _inside(workspace: Path, relative: str) -> Path:
    path = (workspace / relative).resolve()
    if not path.is_relative_to(workspace.resolve()):
        raise JobStepError(f"'{relative}' points outside the workspace.")
    return path


def read_metrics_file(path: Path, shown: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise JobStepError(f"The metrics file {shown} was not written.") from None
    except (OSError, ValueError) as exc:
        raise JobStepError(f"The metrics file {shown} cannot be read: {exc}") from None
    if not isinstance(doc, dict):
        raise JobStepError(f"The metrics file {shown} must hold a JSON object.")
    return doc


def train_outcome(
    *, job: Job, workspace: Path, log, run_command: Callable[..., Any]
) -> dict[str, Any]:
    opts = job.options
    if not opts.get("model"):
        raise JobStepError("A train job needs model: (the file its script writes).")
    model_path = _inside(workspace, opts["model"])
    if not model_path.is_file():
        raise JobStepError(f"The train job wrote no model at {opts['model']}.")
    metrics, params, tags = {}, {}, {}
    if opts.get("metrics"):
        doc = read_metrics_file(_inside(workspace, opts["metrics"]), opts["metrics"])
        split = split_metrics(doc)
        metrics, params, tags = split.metrics, split.params, split.tags
    digest = "sha256:" + file_sha256(model_path)
    model = {
        "name": opts.get("model_name") or Path(opts["model"]).stem,
        "path": opts["model"],
        "digest": digest,
        "size_bytes": model_path.stat().st_size,
        "metrics": metrics,
        "params": params,
        "tags": tags,
    }
    log.line(f"model {opts['model']}: {digest}")
    if metrics:
        log.line("metrics " + ", ".join(f"{k}={v}" for k, v in sorted(metrics.items())))
    result: dict[str, Any] = {"model": model, "metrics": metrics}
    if opts.get("gate"):
        result["gate"] = _run_gate(job, workspace, log, run_command, model, metrics)
    return result


def _data_path(rule: GateRule, consumes: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(dataset name, workspace path) of the evaluation data: the consumed dataset the gate
    names, else the only one the job consumes."""
    if rule.dataset:
        if rule.dataset not in consumes:
            raise JobStepError(
                f"The gate evaluates on dataset '{rule.dataset}', which the job does not consume."
            )
        return rule.dataset, consumes[rule.dataset]
    if len(consumes) == 1:
        ((name, path),) = consumes.items()
        return name, path
    return None, None


def _evaluate(rule, run_command, workspace, *, model: str, data: str, side: str) -> dict:
    output = f"{GATE_DIR}/{side}.json"
    (workspace / GATE_DIR).mkdir(parents=True, exist_ok=True)
    command = rule.evaluate.format(
        model=shlex.quote(model), data=shlex.quote(data), output=shlex.quote(output)
    )
    outcome = run_command([command])
    if not outcome.succeeded:
        what = outcome.error or (
            "timed out"
            if outcome.timed_out
            else "canceled"
            if outcome.canceled
            else f"exited with code {outcome.exit_code}"
        )
        raise JobStepError(f"Gate: the evaluate command for the {side} {what}.")
    doc = read_metrics_file(workspace / output, f"{output} (the {side}'s evaluation)")
    return split_metrics(doc).metrics


def _run_gate(job, workspace, log, run_command, model, metrics) -> dict[str, Any]:
    try:
        rule = GateRule.from_options(job.options["gate"])
    except (KeyError, ValueError) as exc:
        raise JobStepError(f"Gate: {exc}") from None
    champion = champion_for(
        project=job.run.project, model_name=model["name"], environment=rule.environment
    )
    dataset, data = _data_path(rule, job.options.get("consumes") or {})
    data_digest = None
    if data is not None:
        data_file = _inside(workspace, data)
        if not data_file.is_file():
            raise JobStepError(f"Gate: the evaluation data {data} is not in the workspace.")
        data_digest = "sha256:" + file_sha256(data_file)
    champion_metrics: dict | None = None
    if rule.evaluate:
        if data is None and "{data}" in rule.evaluate:
            raise JobStepError("Gate: say which consumed dataset to evaluate on (gate.dataset).")
        candidate = _evaluate(
            rule, run_command, workspace, model=model["path"], data=data or "", side="candidate"
        )
        if champion is not None:
            placed = f"{CHAMPION_DIR}/{Path(model['path']).name}"
            try:
                model_file_place(model_version=champion, dest=_inside(workspace, placed))
            except ModelFileError as exc:
                raise JobStepError(f"Gate: the champion cannot be evaluated: {exc}") from None
            log.line(f"champion {champion} ({rule.environment}) placed at {placed}")
            champion_metrics = _evaluate(
                rule, run_command, workspace, model=placed, data=data or "", side="champion"
            )
    else:  # no evaluate command: the training metrics against the champion's registered ones
        candidate = dict(metrics)
        champion_metrics = dict(champion.metrics) if champion is not None else None
    verdict = compare(rule, candidate, champion_metrics)
    log.line(f"gate {'passed' if verdict.passed else 'failed'}: {verdict.reason}")
    if rule.metric in candidate and champion_metrics and rule.metric in champion_metrics:
        log.line(
            f"gate scores: candidate {rule.metric}={num(candidate[rule.metric])}, "
            f"champion {champion} {rule.metric}={num(champion_metrics[rule.metric])}"
        )
    return {
        "metric": rule.metric,
        "direction": rule.direction,
        "min_delta": rule.min_delta,
        "relative": rule.relative,
        "guards": dict(rule.guards),
        "environment": rule.environment,
        "dataset": dataset,
        "data_path": data,
        "data_digest": data_digest,
        "evaluated": bool(rule.evaluate),
        "candidate_metrics": candidate,
        "champion_metrics": champion_metrics,
        "champion": None
        if champion is None
        else {
            "id": champion.pk,
            "name": champion.name,
            "version": champion.version,
            "digest": champion.artifact_digest,
        },
        "passed": verdict.passed,
        "reason": verdict.reason,
    }
