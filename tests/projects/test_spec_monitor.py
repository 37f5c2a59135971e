"""The `monitor:` block (the CM loop, docs/monitoring.md): what it parses to, that the old
block stays valid, and its errors, each naming its line."""

import json
import textwrap

import pytest

from apps.projects.spec import (
    MonitorColumnSpec,
    PerformanceAlertSpec,
    PipelineSpec,
    SpecError,
    parse_spec,
)

PUSH = """\
version: 1
jobs:
  unit: {kind: test, script: pytest -q}
"""
PIPELINES = """\
pipelines:
  train:
    params:
      seed: {type: integer, default: 1}
    jobs:
      fit: {kind: train, script: python train.py, model: model.joblib}
"""
FULL = (
    PUSH
    + PIPELINES
    + """\
monitor:
  reference: data/features.csv
  features: [f0, f1, plan]
  target: churned
  prediction: score
  task: classification
  columns:
    plan: {kind: categorical, test: psi, threshold: 0.2}
    f0: {test: ks, threshold: 0.05}
  drift_share: 0.4
  every: 15m
  window: 1h
  min_rows: 150
  on_drift: retrain
  retrain: {pipeline: train, cooldown: 6h, max_per_day: 3, min_rows: 400}
  alerts:
    performance: {metric: f1, below: 0.7}
    no_observations: 30m
    error_rate: 0.05
    latency_p95_ms: 500
    cpu: 0.9
    memory_mb: 1024
    promotion_waiting: 24h
    webhook_failures: 3
  route: {critical: [slack, email], warning: [slack]}
"""
)


PERF = "monitor.alerts.performance"


def spec(body: str) -> str:
    return textwrap.dedent(body)


def issues(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text)
    return [(i.line, i.path, i.message) for i in caught.value.issues]


def test_the_full_block_parses_into_its_parts() -> None:
    parsed = parse_spec(FULL)
    monitor = parsed.monitor
    assert (monitor.reference, monitor.features, monitor.target, monitor.prediction) == (
        "data/features.csv",
        ("f0", "f1", "plan"),
        "churned",
        "score",
    )
    assert monitor.columns == {
        "plan": MonitorColumnSpec(kind="categorical", test="psi", threshold=0.2),
        "f0": MonitorColumnSpec(test="ks", threshold=0.05),
    }
    assert (monitor.every_seconds, monitor.window_seconds, monitor.min_rows) == (900, 3600, 150)
    assert (monitor.drift_share, monitor.on_drift) == (0.4, "retrain")
    retrain = monitor.retrain
    assert (retrain.pipeline, retrain.cooldown_seconds, retrain.max_per_day, retrain.min_rows) == (
        "train",
        6 * 3600,
        3,
        400,
    )
    alerts = monitor.alerts
    assert alerts.performance == PerformanceAlertSpec(metric="f1", below=0.7)
    assert alerts.performance.breached(0.69) and not alerts.performance.breached(0.7)
    assert (alerts.no_observations_seconds, alerts.promotion_waiting_seconds) == (1800, 86400)
    assert (alerts.error_rate, alerts.latency_p95_ms, alerts.cpu, alerts.memory_mb) == (
        0.05,
        500,
        0.9,
        1024,
    )
    assert alerts.webhook_failures == 3
    assert monitor.route == {"critical": ("slack", "email"), "warning": ("slack",)}
    assert parsed.warnings == ()  # every key of it is acted on


def test_the_parsed_block_survives_the_json_round_trip() -> None:
    parsed = parse_spec(FULL)
    stored = json.loads(json.dumps(parsed.to_dict()))
    assert PipelineSpec.from_dict(stored).monitor == parsed.monitor


def test_a_block_stored_before_the_cm_keys_existed_rebuilds_with_defaults() -> None:
    stored = json.loads(json.dumps(parse_spec(PUSH).to_dict()))
    stored["monitor"] = {
        "reference": "ref.csv",
        "features": ["f0"],
        "method": "psi",
        "threshold": 0.2,
        "every": "15m",
        "every_seconds": 900,
        "on_drift": "alert",
    }
    monitor = PipelineSpec.from_dict(stored).monitor
    assert (monitor.window_seconds, monitor.min_rows, monitor.retrain.max_per_day) == (900, 200, 2)
    assert monitor.column_settings("f0") == (None, "psi", 0.2)


def test_the_old_block_stays_valid_and_its_method_is_every_columns_default() -> None:
    parsed = parse_spec(
        PUSH
        + spec("""
            monitor:
              reference: data/reference.csv
              features: [f0, f1]
              method: ks
              threshold: 0.01
              every: 15m
              columns:
                f1: {test: psi}
        """)
    )
    monitor = parsed.monitor
    assert monitor.column_settings("f0") == (None, "ks", 0.01)
    # A column with its own test does not take the threshold of another test.
    assert monitor.column_settings("f1") == (None, "psi", None)
    assert monitor.window_seconds == 900  # absent: every


def test_without_method_the_test_is_left_to_the_engine() -> None:
    monitor = parse_spec(PUSH + "monitor: {features: [f0]}\n").monitor
    assert monitor.reference == ""  # the training dataset, through lineage
    assert monitor.column_settings("f0") == (None, None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The push jobs hold the train job: the push pipeline.
        (
            "version: 1\njobs:\n  fit: {kind: train, script: x}\nmonitor: {on_drift: retrain}\n",
            "",
        ),
        # Only a named pipeline has one.
        (PUSH + PIPELINES + "monitor: {on_drift: retrain}\n", "train"),
    ],
)
def test_the_retrain_pipeline_defaults_to_the_first_with_a_train_job(text, expected) -> None:
    assert parse_spec(text).monitor.retrain.pipeline == expected


def test_errors_name_their_line() -> None:
    text = PUSH + spec("""
        monitor:
          features: [f0, churned]
          target: churned
          columns:
            f01: {test: psi}
            f0: {kind: categorical, test: ks}
          alerts:
            performance: {metric: mae, below: 0.7, above: 0.9}
    """)
    assert issues(text) == [
        (6, "monitor.features[1]", "'churned' is the target, not a feature"),
        (9, "monitor.columns.f01", "'f01' is not in monitor.features (did you mean 'f0'?)"),
        (10, "monitor.columns.f0.test", "test 'ks' is for numeric columns (kind: categorical)"),
        (12, f"{PERF}.metric", "'mae' is a regression metric (task: classification)"),
        (12, f"{PERF}.above", "'below' and 'above' cannot both be set (pick one)"),
    ]  # fmt: skip


def test_a_performance_alert_needs_the_target_and_a_bound() -> None:
    text = PUSH + "monitor:\n  alerts:\n    performance: {metric: f1}\n"
    assert issues(text) == [
        (6, PERF, "needs monitor.target (the label column of the reference)"),
        (6, PERF, "needs one of 'below' or 'above'"),
    ]  # fmt: skip


def test_schema_errors_of_the_new_keys() -> None:
    text = PUSH + spec("""
        monitor:
          window: 90
          drift_share: 1.5
          columns:
            f0: {test: tvd}
          route: {critical: [pager]}
    """)
    found = {(line, path) for line, path, _ in issues(text)}
    assert found == {
        (6, "monitor.window"),
        (7, "monitor.drift_share"),
        (9, "monitor.columns.f0.test"),
        (10, "monitor.route.critical[0]"),
    }


def test_the_retrain_pipeline_must_exist_and_train() -> None:
    unknown = PUSH + PIPELINES + "monitor: {on_drift: retrain, retrain: {pipeline: trian}}\n"
    assert issues(unknown) == [
        (10, "monitor.retrain.pipeline", "unknown pipeline 'trian' (did you mean 'train'?)")
    ]
    no_train = (
        PUSH
        + "pipelines:\n  etl:\n    jobs:\n      x: {kind: script, script: x}\n"
        + "monitor: {on_drift: retrain, retrain: {pipeline: etl}}\n"
    )
    assert issues(no_train) == [
        (8, "monitor.retrain.pipeline", "pipeline 'etl' has no job of kind 'train'")
    ]
    required = PIPELINES.replace("{type: integer, default: 1}", "{type: integer}")
    text = PUSH + required + "monitor: {on_drift: retrain, retrain: {pipeline: train}}\n"
    assert issues(text) == [
        (
            10,
            "monitor.retrain.pipeline",
            "parameter 'seed' of pipeline 'train' has no default, and a retrain gives no "
            "parameters",
        )
    ]
