"""The CT keys of `.controlplane.yml`: named pipelines, params, datasets, the step cache,
resources, the richer gate and schedule mappings (pure Python, no database)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from apps.projects.spec import (
    GateSpec,
    JobSpec,
    NamedPipelineSpec,
    ParamSpec,
    PipelineSpec,
    ScheduleSpec,
    SpecError,
    SpecIssue,
    load_schema,
    parse_spec,
)


def spec(body: str) -> str:
    return textwrap.dedent(body).lstrip("\n")


def errors(text: str) -> list[SpecIssue]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text)
    return caught.value.issues


def only_error(text: str) -> tuple[int | None, str, str]:
    issues = errors(text)
    assert len(issues) == 1, issues
    return issues[0].line, issues[0].path, issues[0].message


CT_SPEC = spec("""
    version: 1
    variables: {GLOBAL: g, SHARED: top}
    environments: {dev: {}, production: {required_approvals: 1}}
    jobs:
      ingest:
        kind: script
        script: [python ingest.py]
        produces: {raw: out/raw.csv}
    pipelines:
      features:
        concurrency: cancel_previous
        on_dataset: [raw]
        params:
          rows: {type: number, default: 5000, minimum: 1, maximum: 1000000, description: Rows}
          region: {type: choice, choices: [eu, us], default: eu}
          full: {type: boolean, default: false}
          note: {type: string}
        variables: {SHARED: pipeline, LEVEL: 2}
        jobs:
          prepare:
            kind: script
            script: ["python prepare.py --rows $PARAM_ROWS"]
            consumes: {raw: data/raw.csv}
            produces: {features: out/features.parquet}
            cache: true
            inputs: [prepare.py, model/]
            resources: {cpu: 2, memory: 4Gi, gpu: 1}
          report:
            kind: script
            needs: [prepare]
            script: [echo done]
            variables: {LEVEL: 3}
      train:
        on_dataset: [features]
        jobs:
          train:
            kind: train
            consumes: {features: data/features.csv, eval: data/eval.csv}
            script: ["python train.py"]
            model: artifacts/model.joblib
            metrics: artifacts/metrics.json
            model_name: churn
            cache: [.cache/pip]
            gate:
              metric: f1
              direction: max
              min_delta: 0.01
              relative: true
              guards: {latency_ms: min, size_bytes: min}
              environment: production
              dataset: eval
              evaluate: "python -m model.evaluate --model {model} --data {data} --out {output}"
    schedules:
      nightly: "@daily"
      retrain:
        pipeline: train
        cron: "0 */6 * * *"
        timezone: Europe/Paris
        environments: [dev, production]
      sample:
        pipeline: features
        every: 30s
        params: {rows: 1000, note: hi, full: true}
""")


# ------------------------------------------------------------------ a valid spec


def test_named_pipelines_parse() -> None:
    parsed = parse_spec(CT_SPEC)
    assert list(parsed.jobs) == ["ingest"]  # a push runs only these
    assert list(parsed.pipelines) == ["features", "train"]
    features = parsed.pipelines["features"]
    assert (features.concurrency, features.on_dataset) == ("cancel_previous", ("raw",))
    assert features.variables == {"SHARED": "pipeline", "LEVEL": "2"}
    assert features.params == {
        "rows": ParamSpec("rows", "number", 5000, False, (), 1, 1000000, "Rows"),
        "region": ParamSpec("region", "choice", "eu", False, ("eu", "us")),
        "full": ParamSpec("full", "boolean", False, False),
        "note": ParamSpec("note", "string", None, True),
    }
    prepare = features.jobs["prepare"]
    assert prepare.consumes == {"raw": "data/raw.csv"}
    assert prepare.produces == {"features": "out/features.parquet"}
    assert (prepare.step_cache, prepare.cache) == (True, ())
    assert prepare.inputs == ("prepare.py", "model/")
    assert prepare.resources == {"cpu": 2, "memory": "4Gi", "gpu": 1}
    assert parsed.pipelines["train"].concurrency == "queue"
    train = parsed.pipelines["train"].jobs["train"]
    assert (train.step_cache, train.cache) == (False, (".cache/pip",))
    assert train.gate == GateSpec(
        metric="f1",
        direction="max",
        min_delta=0.01,
        relative=True,
        guards={"latency_ms": "min", "size_bytes": "min"},
        environment="production",
        dataset="eval",
        evaluate="python -m model.evaluate --model {model} --data {data} --out {output}",
    )
    assert train.options == {
        "model": "artifacts/model.joblib",
        "metrics": "artifacts/metrics.json",
        "model_name": "churn",
    }


def test_gate_defaults_and_job_defaults() -> None:
    parsed = parse_spec(
        spec("""
        version: 1
        jobs:
          fit: {kind: train, script: [x], model: m.joblib, metrics: m.json, gate: {metric: auc}}
          unit: {kind: test, script: [pytest]}
    """)
    )
    assert parsed.jobs["fit"].gate == GateSpec("auc", "max", 0.0, False, {}, "production")
    unit = parsed.jobs["unit"]
    assert (unit.produces, unit.consumes, unit.step_cache, unit.inputs) == ({}, {}, False, ())
    assert (unit.resources, unit.gate, parsed.pipelines) == ({}, None, {})


def test_schedules_parse_to_schedule_specs() -> None:
    parsed = parse_spec(CT_SPEC)
    assert parsed.schedules == {
        "nightly": ScheduleSpec("nightly", cron="0 0 * * *"),
        "retrain": ScheduleSpec(
            "retrain",
            pipeline="train",
            cron="0 */6 * * *",
            timezone="Europe/Paris",
            environments=("dev", "production"),
        ),
        "sample": ScheduleSpec(
            "sample",
            pipeline="features",
            every_seconds=30,
            params={"rows": 1000, "note": "hi", "full": True},
        ),
    }


@pytest.mark.parametrize(
    ("every", "seconds"), [("1s", 1), ("5m", 300), ("1h", 3600), ("2d", 172800)]
)
def test_every_units(every: str, seconds: int) -> None:
    text = "version: 1\njobs: {a: {kind: script, script: x}}\n"
    parsed = parse_spec(text + f"schedules: {{s: {{every: {every}}}}}\n")
    assert parsed.schedules["s"].every_seconds == seconds
    assert parsed.schedules["s"].pipeline == ""  # the push pipeline


def test_pipeline_jobs_variables_and_order() -> None:
    parsed = parse_spec(CT_SPEC)
    jobs, variables = parsed.pipeline_jobs("")
    assert (list(jobs), variables) == (["ingest"], {"GLOBAL": "g", "SHARED": "top"})
    jobs, variables = parsed.pipeline_jobs("features")
    assert list(jobs) == ["prepare", "report"]
    assert variables == {"GLOBAL": "g", "SHARED": "pipeline", "LEVEL": "2"}
    assert parsed.job_variables("report", "features")["LEVEL"] == "3"
    assert parsed.job_variables("ingest") == {"GLOBAL": "g", "SHARED": "top"}
    assert parsed.topological_order("features") == ["prepare", "report"]
    assert parsed.pipelines["features"].topological_order() == ["prepare", "report"]
    assert parsed.pipelines_on_dataset("raw") == ["features"]
    assert parsed.pipelines_on_dataset("features") == ["train"]
    with pytest.raises(KeyError, match="unknown pipeline 'nope'"):
        parsed.pipeline_jobs("nope")


def test_round_trip_through_json() -> None:
    parsed = parse_spec(CT_SPEC)
    stored = json.loads(json.dumps(parsed.to_dict(), allow_nan=False))
    assert stored["schedules"]["sample"]["every_seconds"] == 30
    assert stored["pipelines"]["train"]["jobs"]["train"]["gate"]["dataset"] == "eval"
    again = PipelineSpec.from_dict(stored)
    assert again == parsed
    assert isinstance(again.pipelines["features"], NamedPipelineSpec)
    assert again.pipelines["features"].params["note"].required is True


def test_a_run_spec_stored_before_the_ct_keys_still_loads() -> None:
    """What `to_dict()` wrote before: schedules as cron strings, the gate in a train job's
    options, no `pipelines` and no CT job keys."""
    old_job = {
        "name": "fit",
        "kind": "train",
        "needs": [],
        "runner": "local",
        "image": None,
        "script": ["python train.py"],
        "timeout": 3600,
        "retries": 0,
        "artifacts": [],
        "reports": {},
        "cache": [".cache/pip"],
        "variables": {},
        "when": "on_success",
        "options": {
            "model": "m.joblib",
            "metrics": "m.json",
            "gate": {"metric": "f1", "direction": "min", "min_delta": 0.5},
        },
    }
    stored = {
        "version": 1,
        "jobs": {"fit": old_job, "unit": {**old_job, "name": "unit", "kind": "test"}},
        "schedules": {"nightly": "0 0 * * *"},
        "variables": {},
        "raw": {},
    }
    stored["jobs"]["unit"]["options"] = {}
    loaded = PipelineSpec.from_dict(stored)
    assert loaded.schedules == {"nightly": ScheduleSpec("nightly", cron="0 0 * * *")}
    assert loaded.pipelines == {}
    fit = loaded.jobs["fit"]
    assert fit.gate == GateSpec("f1", "min", 0.5)
    assert fit.options == {"model": "m.joblib", "metrics": "m.json"}
    assert (fit.produces, fit.step_cache, fit.inputs, fit.cache) == ({}, False, (), (".cache/pip",))
    assert loaded.jobs["unit"].gate is None
    assert JobSpec.from_dict(fit.to_dict()) == fit
    assert loaded.pipeline_jobs("")[0] is loaded.jobs


def test_the_schema_accepts_the_raw_spec() -> None:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert Draft202012Validator(schema).is_valid(parse_spec(CT_SPEC).raw)


def test_the_ct_keys_are_acted_on_and_warn_no_more() -> None:
    assert parse_spec(CT_SPEC).warnings == ()


# ------------------------------------------------------------------ errors

BASE = "version: 1\njobs:\n  a: {kind: script, script: x}\n"  # lines 1-3


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "pipelines:\n  Train: {jobs: {t: {kind: script, script: x}}}\n",
            (
                5,
                "pipelines.Train",
                "invalid name 'Train': must be 1-63 characters: lowercase "
                "letters, digits, '_' or '-', starting with a letter or digit",
            ),
        ),
        (
            "pipelines:\n  p: {concurrency: queue}\n",
            (5, "pipelines.p", "'jobs' is required"),
        ),
        (
            "pipelines:\n  p:\n    concurency: skip\n    jobs: {t: {kind: script, script: x}}\n",
            (
                6,
                "pipelines.p.concurency",
                "unknown key 'concurency' (did you mean 'concurrency'? "
                "allowed: jobs, params, concurrency, on_dataset, variables)",
            ),
        ),
        (
            "pipelines:\n  p:\n    concurrency: wait\n    jobs: {t: {kind: script, script: x}}\n",
            (
                6,
                "pipelines.p.concurrency",
                "must be one of: skip, queue, cancel_previous (got 'wait')",
            ),
        ),
        (
            "pipelines:\n  p:\n    jobs:\n      t: {kind: script, script: x, needs: [a]}\n",
            (
                7,
                "pipelines.p.jobs.t.needs[0]",
                "unknown job 'a' in pipeline 'p' (it is a job of "
                "the push pipeline `jobs`; needs stay in one pipeline)",
            ),
        ),
        (
            "pipelines:\n  p:\n    jobs:\n      tt: {kind: script, script: x}\n"
            "      u: {kind: script, script: x, needs: [t]}\n",
            (
                8,
                "pipelines.p.jobs.u.needs[0]",
                "unknown job 't' in pipeline 'p' (did you mean 'tt'?)",
            ),
        ),
        (
            "pipelines:\n  p:\n    jobs:\n      t: {kind: script, script: x, needs: [u]}\n"
            "      u: {kind: script, script: x, needs: [t]}\n",
            (7, "pipelines.p.jobs.t.needs[0]", "dependency cycle: t -> u -> t"),
        ),
        (
            "pipelines:\n  p:\n    jobs:\n      t: {kind: script, script: x, gate: {metric: f1}}\n",
            (
                7,
                "pipelines.p.jobs.t.gate",
                "key 'gate' is not allowed for kind 'script' jobs (only: train)",
            ),
        ),
    ],
)
def test_pipeline_errors(body: str, expected: tuple[int, str, str]) -> None:
    assert only_error(BASE + body) == expected


def _block(text: str, indent: str) -> str:
    return textwrap.indent(textwrap.dedent(text).strip("\n") + "\n", indent)


def job(extra: str) -> str:
    """A spec whose job `j` (line 3) has the extra keys, one per line, indented."""
    return "version: 1\njobs:\n  j:\n    kind: script\n    script: x\n" + _block(extra, "    ")


def train(extra: str) -> str:
    """A spec whose train job `t` (line 3) has a model and metrics, plus the extra keys."""
    head = "version: 1\njobs:\n  t:\n    kind: train\n    script: x\n    model: m.joblib\n"
    body = "    metrics: m.json\n" + _block(extra, "    ")
    return head + body


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            job("produces: {Raw-Data: out/raw.csv}"),
            (
                6,
                "jobs.j.produces.Raw-Data",
                "invalid name 'Raw-Data': must be 1-63 characters: "
                "lowercase letters, digits or '_', starting with a letter (it becomes part of an "
                "environment variable name)",
            ),
        ),
        (
            job("produces: {raw: out/raw.json}"),
            (6, "jobs.j.produces.raw", "must be a .csv or .parquet file"),
        ),
        (
            job("consumes: {raw: ../raw.csv}"),
            (
                6,
                "jobs.j.consumes.raw",
                "must be a relative path inside the repository (not absolute, no '..' components)",
            ),
        ),
        (
            job("produces: {raw: a.csv}\n") + "  k:\n    kind: script\n    script: x\n"
            "    produces: {raw: b.csv}\n",
            (
                10,
                "jobs.k.produces.raw",
                "dataset 'raw' is also produced by job 'j' of this "
                "pipeline (one job per pipeline may produce a dataset)",
            ),
        ),
        (
            job("cache: true\ninputs: [/etc/passwd]"),
            (
                7,
                "jobs.j.inputs[0]",
                "must be a relative path inside the repository (not absolute, no '..' components)",
            ),
        ),
        (
            job("inputs: [src/]"),
            (6, "jobs.j.inputs", "keys the step cache, so it needs `cache: true` on the same job"),
        ),
        (
            job("cache: yes please"),
            (6, "jobs.j.cache", "must be a list or a boolean (true/false) (got string)"),
        ),
        (
            job("resources: {memory: 4GB}"),
            (6, "jobs.j.resources.memory", "must be an amount of memory such as 512Mi, 4Gi or 2G"),
        ),
        (
            job("resources: {gpu: -1}"),
            (6, "jobs.j.resources.gpu", "must be >= 0 (got -1)"),
        ),
        (
            job("resources: {cpu: 0}"),
            (6, "jobs.j.resources.cpu", "must be > 0 (got 0)"),
        ),
        (
            job("resources: {disk: 1Gi}"),
            (6, "jobs.j.resources.disk", "unknown key 'disk' (allowed: cpu, memory, gpu)"),
        ),
        (
            "version: 1\njobs:\n"
            "  t: {kind: train, script: x, metrics: m.json, gate: {metric: f1}}\n",
            (3, "jobs.t", "'model' is required when 'gate' is set"),
        ),
        (
            train("consumes: {features: f.csv}\ngate: {metric: f1, dataset: eval}"),
            (
                9,
                "jobs.t.gate.dataset",
                "must be a dataset this job consumes ('eval' is not one; it consumes: features)",
            ),
        ),
        (
            train("gate: {metric: f1, dataset: eval}"),
            (
                8,
                "jobs.t.gate.dataset",
                "must be a dataset this job consumes ('eval' is not one; it consumes none)",
            ),
        ),
        (
            train("gate: {metric: f1, evaluate: 'score {model}'}"),
            (8, "jobs.t.gate.evaluate", "must contain the {output} placeholder"),
        ),
        (
            train("gate: {metric: f1, evaluate: 'score {model} {data} {output}'}"),
            (
                8,
                "jobs.t.gate.evaluate",
                "uses {data}, so the gate needs a 'dataset' (one the job consumes)",
            ),
        ),
        (
            train("gate: {metric: f1, guards: {f1: max}}"),
            (
                8,
                "jobs.t.gate.guards.f1",
                "'f1' is the gate's own metric; guards are the other metrics",
            ),
        ),
        (
            train("gate: {metric: f1, guards: {latency: lower}}"),
            (8, "jobs.t.gate.guards.latency", "must be one of: max, min (got 'lower')"),
        ),
        (
            train("gate: {metric: f1, relative: 1}"),
            (8, "jobs.t.gate.relative", "must be a boolean (true/false) (got integer)"),
        ),
        (
            train("gate: {metric: f1, environment: prodution}")
            + "environments: {production: {}}\n",
            (
                8,
                "jobs.t.gate.environment",
                "unknown environment 'prodution' (did you mean 'production'?)",
            ),
        ),
    ],
)
def test_job_errors(text: str, expected: tuple[int, str, str]) -> None:
    assert only_error(text) == expected


def test_gate_environment_is_free_without_an_environments_map() -> None:
    parsed = parse_spec(train("gate: {metric: f1, environment: canary}"))
    assert parsed.jobs["t"].gate.environment == "canary"


PRODUCER = "version: 1\njobs:\n  a:\n    kind: script\n    script: x\n    produces: {raw: r.csv}\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "pipelines:\n  p:\n    on_dataset: [rwa]\n    jobs: {t: {kind: script, script: x}}\n",
            (
                9,
                "pipelines.p.on_dataset[0]",
                "no job of the spec produces dataset 'rwa' (did you mean 'raw'?)",
            ),
        ),
        (
            "pipelines:\n  p:\n    on_dataset: [clean]\n    jobs:\n"
            "      t: {kind: script, script: x, produces: {clean: c.csv}}\n",
            (
                9,
                "pipelines.p.on_dataset[0]",
                "pipeline 'p' would start itself: one of its jobs produces 'clean'",
            ),
        ),
        (
            "pipelines:\n  p:\n    on_dataset: [b]\n    jobs:\n"
            "      t: {kind: script, script: x, produces: {c: c.csv}}\n"
            "  q:\n    on_dataset: [c]\n    jobs:\n"
            "      t: {kind: script, script: x, produces: {b: b.csv}}\n",
            (
                9,
                "pipelines.p.on_dataset",
                "dataset trigger cycle: p -> q -> p (each run would start the next)",
            ),
        ),
        (
            "pipelines:\n  p:\n    on_dataset: [raw, raw]\n"
            "    jobs: {t: {kind: script, script: x}}\n",
            (9, "pipelines.p.on_dataset", "must not contain duplicates"),
        ),
    ],
)
def test_on_dataset_errors(body: str, expected: tuple[int, str, str]) -> None:
    assert only_error(PRODUCER + body) == expected


def test_on_dataset_may_name_a_dataset_of_another_pipeline_or_the_push_jobs() -> None:
    parsed = parse_spec(
        PRODUCER + "pipelines:\n  p:\n    on_dataset: [raw]\n    jobs:\n"
        "      t: {kind: script, script: x, produces: {clean: c.csv}}\n"
        "  q:\n    on_dataset: [clean, raw]\n    jobs: {t: {kind: script, script: x}}\n"
    )
    assert parsed.pipelines_on_dataset("raw") == ["p", "q"]


def params(definitions: str) -> str:
    """A spec with pipeline `p` (line 4) whose params (from line 6) are the definitions."""
    block = _block(definitions, "      ")
    return (
        "version: 1\njobs: {a: {kind: script, script: x}}\npipelines:\n  p:\n"
        "    params:\n" + block + "    jobs: {t: {kind: script, script: x}}\n"
    )


@pytest.mark.parametrize(
    ("definitions", "expected"),
    [
        (
            "region: {type: choice}",
            (6, "pipelines.p.params.region", "type 'choice' needs 'choices'"),
        ),
        (
            "rows: {type: number, choices: [1, 2]}",
            (6, "pipelines.p.params.rows.choices", "'choices' is only for type 'choice'"),
        ),
        (
            "name: {type: string, minimum: 1}",
            (6, "pipelines.p.params.name.minimum", "'minimum' is only for type number or integer"),
        ),
        (
            "rows: {type: number, minimum: 10, maximum: 1}",
            (6, "pipelines.p.params.rows.maximum", "must be >= minimum (10) (got 1)"),
        ),
        (
            "rows: {type: number, maximum: 100, default: 500}",
            (6, "pipelines.p.params.rows.default", "must be <= 100 (got 500)"),
        ),
        (
            "rows: {type: integer, default: 2.5}",
            (6, "pipelines.p.params.rows.default", "must be a whole number (got 2.5)"),
        ),
        (
            "rows: {type: number, default: '5'}",
            (6, "pipelines.p.params.rows.default", "must be a number (got '5')"),
        ),
        (
            "full: {type: boolean, default: 'yes'}",
            (6, "pipelines.p.params.full.default", "must be true or false (got 'yes')"),
        ),
        (
            "region: {type: choice, choices: [eu, us], default: asia}",
            (6, "pipelines.p.params.region.default", "must be one of: eu, us (got 'asia')"),
        ),
        (
            "note: {type: string, default: 3}",
            (6, "pipelines.p.params.note.default", "must be a string (got 3)"),
        ),
        (
            "rows: {type: float}",
            (
                6,
                "pipelines.p.params.rows.type",
                "must be one of: string, number, integer, boolean, choice (got 'float')",
            ),
        ),
        (
            "Rows: {type: number}",
            (
                6,
                "pipelines.p.params.Rows",
                "invalid name 'Rows': must be 1-63 characters: "
                "lowercase letters, digits or '_', starting with a letter (it becomes part of an "
                "environment variable name)",
            ),
        ),
    ],
)
def test_param_definition_errors(definitions: str, expected: tuple[int, str, str]) -> None:
    assert only_error(params(definitions)) == expected


SCHEDULED = (
    params("""
    rows: {type: integer, minimum: 1}
    region: {type: choice, choices: [eu, us], default: eu}
""")
    + "environments: {dev: {}, production: {}}\nschedules:\n"
)  # the first entry is on line 11


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "  s: {pipeline: p, params: {rows: 1}}\n",
            (11, "schedules.s", "needs one of 'cron' or 'every'"),
        ),
        (
            "  s: {pipeline: p, cron: '@daily', every: 1h, params: {rows: 1}}\n",
            (11, "schedules.s.every", "'cron' and 'every' cannot both be set (pick one)"),
        ),
        (
            "  s: {pipeline: p, every: 0s, params: {rows: 1}}\n",
            (11, "schedules.s.every", "must be an interval such as 30s, 5m, 1h or 2d"),
        ),
        (
            "  s: {pipeline: p, every: 1w, params: {rows: 1}}\n",
            (11, "schedules.s.every", "must be an interval such as 30s, 5m, 1h or 2d"),
        ),
        (
            "  s: {pipeline: p, cron: '0 25 * * *', params: {rows: 1}}\n",
            (11, "schedules.s.cron", "invalid cron expression '0 25 * * *'"),
        ),
        (
            "  s: {pipeline: p, cron: '@daily', timezone: Europe/Pari, params: {rows: 1}}\n",
            (
                11,
                "schedules.s.timezone",
                "unknown time zone 'Europe/Pari' (did you mean 'Europe/Paris'?)",
            ),
        ),
        (
            "  s: {pipeline: p, cron: '@daily', timezone: ../etc/x, params: {rows: 1}}\n",
            (11, "schedules.s.timezone", "unknown time zone '../etc/x' (e.g. Europe/Paris)"),
        ),
        (
            "  s: {pipeline: q, cron: '@daily'}\n",
            (11, "schedules.s.pipeline", "unknown pipeline 'q' (declared: p)"),
        ),
        (
            "  s: {pipeline: p, cron: '@daily', environments: [prodution], params: {rows: 1}}\n",
            (
                11,
                "schedules.s.environments[0]",
                "unknown environment 'prodution' (did you mean 'production'?)",
            ),
        ),
        (
            "  s: {cron: '@daily', params: {rows: 1}}\n",
            (11, "schedules.s.params", "only a named pipeline takes params (set 'pipeline')"),
        ),
        (
            "  s: {pipeline: p, cron: '@daily'}\n",
            (
                11,
                "schedules.s",
                "parameter 'rows' of pipeline 'p' has no default, so it is required",
            ),
        ),
        (
            "  s: {pipeline: p, cron: '@daily', params: {region: us}}\n",
            (
                11,
                "schedules.s.params",
                "parameter 'rows' of pipeline 'p' has no default, so it is required",
            ),
        ),
        (
            "  s: {pipeline: p, cron: '@daily', params: {rows: 1, rgion: us}}\n",
            (
                11,
                "schedules.s.params.rgion",
                "unknown parameter of pipeline 'p' (did you mean 'region'? declared: rows, region)",
            ),
        ),
        (
            "  s: {pipeline: p, cron: '@daily', params: {rows: 0}}\n",
            (11, "schedules.s.params.rows", "must be >= 1 (got 0)"),
        ),
        (
            "  s: {pipeline: p, cron: '@daily', params: {rows: 1, region: asia}}\n",
            (11, "schedules.s.params.region", "must be one of: eu, us (got 'asia')"),
        ),
        (
            "  s: {pipeline: p, cron: '@daily', params: {rows: [1]}}\n",
            (
                11,
                "schedules.s.params.rows",
                "must be a string or a number or a boolean (true/false) (got list)",
            ),
        ),
        (
            "  s: {pipeline: p, cron: '@daily', params: {rows: 1}, paused: true}\n",
            (
                11,
                "schedules.s.paused",
                "unknown key 'paused' (allowed: pipeline, cron, every, "
                "timezone, environments, params)",
            ),
        ),
        ("  s: [daily]\n", (11, "schedules.s", "must be a string or a mapping (got list)")),
    ],
)
def test_schedule_errors(entry: str, expected: tuple[int, str, str]) -> None:
    assert only_error(SCHEDULED + entry) == expected


def test_schedule_without_pipelines_declared() -> None:
    text = "version: 1\njobs: {a: {kind: script, script: x}}\nschedules:\n"
    text += "  s: {pipeline: p, every: 1h}\n"
    assert only_error(text) == (
        4,
        "schedules.s.pipeline",
        "unknown pipeline 'p' (the spec declares no `pipelines`)",
    )


def test_schedule_environments_are_free_without_an_environments_map() -> None:
    text = "version: 1\njobs: {a: {kind: script, script: x}}\nschedules:\n"
    parsed = parse_spec(text + "  s: {every: 1h, environments: [anywhere]}\n")
    assert parsed.schedules["s"].environments == ("anywhere",)


def test_errors_in_several_places_are_all_reported_by_line() -> None:
    issues = errors(SCHEDULED + "  s: {pipeline: q}\n  t: {pipeline: p, every: 2x}\n")
    assert [(i.line, i.path) for i in issues] == [
        (11, "schedules.s"),
        (11, "schedules.s.pipeline"),
        (12, "schedules.t"),  # rows is required
        (12, "schedules.t.every"),
    ]


def test_the_documented_full_example_has_the_ct_pipelines() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "pipeline-spec.md").read_text(encoding="utf-8")
    parsed = parse_spec(re.findall(r"```yaml\n(.*?)```", doc, re.S)[0])
    assert list(parsed.pipelines) == ["ingest", "features", "train"]
    assert parsed.pipelines_on_dataset("raw") == ["features"]
    assert parsed.schedules["nightly-ingest"].params == {"rows": 1000, "region": "us"}
    assert parsed.schedules["refresh"].every_seconds == 6 * 3600
    assert parsed.warnings == ()  # as the page says: monitor is acted on now
