"""`jobs_from_spec`: the job rows of the push pipeline or of a named pipeline, with the CT keys
in `options` where the executor reads them."""

from __future__ import annotations

from apps.pipelines import services
from apps.projects.spec import parse_spec

SPEC = """\
version: 1
variables: {GLOBAL: g}
jobs:
  unit: {kind: test, script: [pytest], cache: [.cache/pip]}
pipelines:
  train:
    variables: {STAGE: train}
    jobs:
      fit:
        kind: train
        needs: [prepare]
        script: [python train.py]
        model: m.joblib
        metrics: m.json
        consumes: {features: data/features.csv, eval: data/eval.csv}
        gate: {metric: f1, dataset: eval, guards: {latency_ms: min}}
      prepare:
        kind: script
        script: [python prepare.py]
        produces: {features: out/features.csv}
        cache: true
        inputs: [prepare.py]
        resources: {cpu: 2, memory: 4Gi}
        variables: {STAGE: prepare}
"""


def test_the_push_pipeline_is_the_default_and_gets_empty_ct_options():
    (unit,) = services.jobs_from_spec(parse_spec(SPEC))
    assert unit["name"] == "unit"
    options = unit["options"]
    assert options["cache"] == [".cache/pip"]
    assert options["variables"] == {"GLOBAL": "g"}
    assert (options["produces"], options["consumes"], options["inputs"]) == ({}, {}, [])
    assert (options["step_cache"], options["resources"], options["gate"]) == (False, {}, None)


def test_a_named_pipeline_in_dependency_order_with_its_ct_options():
    prepare, fit = services.jobs_from_spec(parse_spec(SPEC), "train")
    assert [prepare["name"], fit["name"]] == ["prepare", "fit"]
    assert prepare["options"]["produces"] == {"features": "out/features.csv"}
    assert prepare["options"]["step_cache"] is True
    assert prepare["options"]["cache"] == []
    assert prepare["options"]["inputs"] == ["prepare.py"]
    assert prepare["options"]["resources"] == {"cpu": 2, "memory": "4Gi"}
    assert prepare["options"]["variables"] == {"GLOBAL": "g", "STAGE": "prepare"}
    assert fit["options"]["variables"] == {"GLOBAL": "g", "STAGE": "train"}
    assert fit["options"]["consumes"] == {
        "features": "data/features.csv",
        "eval": "data/eval.csv",
    }
    assert fit["options"]["gate"] == {
        "metric": "f1",
        "direction": "max",
        "min_delta": 0.0,
        "relative": False,
        "guards": {"latency_ms": "min"},
        "environment": "production",
        "dataset": "eval",
        "evaluate": None,
    }
    assert (fit["options"]["model"], fit["options"]["metrics"]) == ("m.joblib", "m.json")
