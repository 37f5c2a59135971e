"""Tests for the `.controlplane.yml` parser (pure Python, no database)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from apps.projects.spec import (
    MAX_SPEC_BYTES,
    GateSpec,
    PipelineSpec,
    ScheduleSpec,
    SpecError,
    SpecIssue,
    load_schema,
    parse_spec,
    ref_matches,
)

FULL_EXAMPLE = """\
version: 1
jobs:
  test:        {kind: test, image: python:3.11-slim, runner: local, script: ["pip install -r requirements.txt", "pytest -q --junitxml=reports/junit.xml"], artifacts: [reports/junit.xml], reports: {junit: reports/junit.xml}, cache: [.cache/pip], timeout: 600, retries: 1, variables: {FOO: bar}}
  reproduce:   {kind: reproducibility, needs: [build], command: "python -m model.predict {input} {output}",
                input: tests/ref/input.csv, expected: tests/ref/expected.csv, tolerance: 1.0e-6}
  build:       {kind: build, needs: [test], dockerfile: Dockerfile}
  train:       {kind: train, script: ["python train.py --out artifacts/"], model: artifacts/model.joblib,
                metrics: artifacts/metrics.json, gate: {metric: f1, direction: max, min_delta: 0.0}}
serve:         {command: "python -m model.serve --port $PORT", health: /healthz, port: 8080}
environments:  {dev: {auto_deploy: true}, staging: {auto_deploy: true},
                production: {auto_deploy: false, required_approvals: 1}}
monitor:       {reference: data/reference.csv, features: [f0, f1], method: psi, threshold: 0.2,
                every: 15m, on_drift: retrain}
schedules:     {retrain: "0 3 * * 1"}
variables:     {GLOBAL: value}
branches:      {only: [main, "release/*"]}   # optional
cancel_previous: true                          # optional
"""  # noqa: E501 - the example is quoted verbatim from the brief


def spec(body: str) -> str:
    return textwrap.dedent(body).lstrip("\n")


def errors(text: str | bytes) -> list[SpecIssue]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text)
    return caught.value.issues


def located(text: str | bytes) -> list[tuple[int | None, str]]:
    return [(issue.line, issue.path) for issue in errors(text)]


def only_error(text: str | bytes) -> SpecIssue:
    issues = errors(text)
    assert len(issues) == 1, issues
    return issues[0]


MINIMAL = spec("""
    version: 1
    jobs:
      unit:
        kind: test
        script: pytest -q
""")


# ------------------------------------------------------------------ valid specs


def test_full_example_parses() -> None:
    parsed = parse_spec(FULL_EXAMPLE)
    assert list(parsed.jobs) == ["test", "reproduce", "build", "train"]
    test = parsed.jobs["test"]
    assert test.script == (
        "pip install -r requirements.txt",
        "pytest -q --junitxml=reports/junit.xml",
    )
    assert (test.timeout, test.retries, test.image) == (600, 1, "python:3.11-slim")
    assert test.reports == {"junit": "reports/junit.xml"}
    assert test.cache == (".cache/pip",)
    assert parsed.jobs["reproduce"].options == {
        "command": "python -m model.predict {input} {output}",
        "input": "tests/ref/input.csv",
        "expected": "tests/ref/expected.csv",
        "tolerance": 1e-6,
        "in_image": None,
    }
    assert parsed.jobs["train"].gate == GateSpec(metric="f1", direction="max", min_delta=0.0)
    assert parsed.environments["production"].required_approvals == 1
    assert parsed.monitor is not None and parsed.monitor.every_seconds == 900
    assert parsed.schedules == {"retrain": ScheduleSpec("retrain", cron="0 3 * * 1")}
    assert parsed.cancel_previous is True
    assert parsed.raw["serve"]["port"] == 8080


def test_defaults_are_filled_in() -> None:
    text = spec("""
        version: 1
        jobs:
          unit: {kind: test, script: pytest -q}
          build: {kind: build, needs: [unit]}
          check: {kind: reproducibility, command: "p {input} {output}", input: i, expected: e}
        serve: {command: run}
        environments: {prod: {}}
        monitor: {reference: ref.csv}
    """)
    parsed = parse_spec(text)
    unit = parsed.jobs["unit"]
    assert (unit.runner, unit.timeout, unit.retries, unit.when) == ("local", 3600, 0, "on_success")
    assert unit.script == ("pytest -q",)
    assert (unit.needs, unit.artifacts, unit.options, unit.image) == ((), (), {}, None)
    assert parsed.jobs["build"].options == {
        "dockerfile": "Dockerfile",
        "context": ".",
        "model": None,
        "metrics": None,
    }
    assert parsed.jobs["check"].options["tolerance"] == 1e-6
    assert (parsed.serve.health, parsed.serve.port) == ("/healthz", 8080)
    prod = parsed.environments["prod"]
    assert (prod.auto_deploy, prod.required_approvals, prod.allow_self_approval) == (
        False,
        0,
        False,
    )
    assert prod.approval_ttl_hours is None
    monitor = parsed.monitor
    # No method or threshold: each column's test is chosen as Evidently does.
    assert (monitor.method, monitor.threshold, monitor.every_seconds, monitor.on_drift) == (
        None,
        None,
        3600,
        "alert",
    )
    assert (monitor.window_seconds, monitor.min_rows, monitor.drift_share) == (3600, 200, 0.5)
    assert (monitor.reference, monitor.target, monitor.prediction, monitor.task) == (
        "ref.csv",
        "",
        "prediction",
        "classification",
    )
    assert (parsed.branches, parsed.tags, parsed.cancel_previous) == (None, None, False)


def test_variables_become_strings_and_job_overrides_global() -> None:
    parsed = parse_spec(
        spec("""
        version: 1
        variables: {A: 1, B: true, C: keep}
        jobs:
          j: {kind: script, script: [env], variables: {A: 2.5, D: "2024-01-01", E: 2024-01-01}}
    """)
    )
    assert parsed.variables == {"A": "1", "B": "true", "C": "keep"}
    assert parsed.job_variables("j") == {
        "A": "2.5",
        "B": "true",
        "C": "keep",
        "D": "2024-01-01",
        "E": "2024-01-01",
    }


def test_merge_keys_and_anchors_are_supported() -> None:
    parsed = parse_spec(
        spec("""
        version: 1
        jobs:
          unit: &defaults
            kind: test
            script: [pytest]
            timeout: 60
          lint:
            <<: *defaults
            script: [ruff check .]
    """)
    )
    assert parsed.jobs["lint"].timeout == 60
    assert parsed.jobs["lint"].script == ("ruff check .",)


# ------------------------------------------------------------------ error locations


def test_every_error_names_key_and_line() -> None:
    text = spec("""
        version: 1
        jobs:
          test:
            kind: test
            scirpt: [pytest]
            timeout: 0
          build:
            kind: build
            needs: [tset]
            runner: podman
        schedules:
          nightly: "0 25 * * *"
        cancel_previous: maybe
    """)
    assert located(text) == [
        (3, "jobs.test"),  # 'script' is required
        (5, "jobs.test.scirpt"),
        (6, "jobs.test.timeout"),
        (9, "jobs.build.needs[0]"),
        (10, "jobs.build.runner"),
        (12, "schedules.nightly"),
        (13, "cancel_previous"),
    ]


def test_issue_str_format() -> None:
    issue = errors(
        spec("""
        version: 1
        jobs:
          test: {kind: test, script: x}
          build:
            kind: build
            needs: [tset]
    """)
    )[0]
    assert str(issue) == (
        ".controlplane.yml:6: jobs.build.needs[0]: unknown job 'tset' (did you mean 'test'?)"
    )
    assert issue.column == 13
    assert str(SpecIssue("", None, None, "boom")) == ".controlplane.yml: boom"


def test_unknown_key_with_suggestion_and_allowed_list() -> None:
    issue = only_error(MINIMAL + "    retires: 2\n")
    assert (issue.line, issue.path) == (6, "jobs.unit.retires")
    assert "unknown key 'retires'" in issue.message
    assert "did you mean 'retries'?" in issue.message
    assert "allowed: kind, needs" in issue.message
    assert "dockerfile" not in issue.message  # kind-specific keys of other kinds are not offered


def test_unknown_top_level_key() -> None:
    issue = only_error(MINIMAL + "enviroments: {}\n")
    assert (issue.line, issue.path) == (6, "enviroments")
    assert "did you mean 'environments'?" in issue.message


def test_required_keys_by_kind() -> None:
    issues = errors(
        spec("""
        version: 1
        jobs:
          r:
            kind: reproducibility
            input: in.csv
    """)
    )
    assert [(i.line, i.message) for i in issues] == [
        (3, "'command' is required for kind 'reproducibility' jobs"),
        (3, "'expected' is required for kind 'reproducibility' jobs"),
    ]


def test_key_of_another_kind_is_rejected() -> None:
    issue = only_error(MINIMAL + "    dockerfile: Dockerfile\n")
    assert (issue.line, issue.path) == (6, "jobs.unit.dockerfile")
    assert issue.message == "key 'dockerfile' is not allowed for kind 'test' jobs (only: build)"


def test_missing_version_and_wrong_version() -> None:
    assert [i.message for i in errors("jobs: {a: {kind: test, script: x}}\n")] == [
        "'version' is required"
    ]
    issue = only_error(MINIMAL.replace("version: 1", "version: 2"))
    assert (issue.line, issue.path, issue.message) == (1, "version", "must be 1 (got 2)")


def test_enum_and_type_messages() -> None:
    issues = errors(MINIMAL + "    when: manul\n    retries: many\n")
    assert [(i.line, i.message) for i in issues] == [
        (6, "must be one of: on_success, always, manual (got 'manul'; did you mean 'manual'?)"),
        (7, "must be an integer (got string)"),
    ]


def test_invalid_job_name() -> None:
    issue = only_error(MINIMAL + "  Build_Image: {kind: build}\n")
    assert (issue.line, issue.path) == (6, "jobs.Build_Image")
    assert issue.message.startswith("invalid name 'Build_Image'")


# ------------------------------------------------------------------ semantic checks


def test_unknown_needs_did_you_mean() -> None:
    issue = only_error(MINIMAL + "    needs: [unti]\n")
    assert (issue.line, issue.path) == (6, "jobs.unit.needs[0]")
    assert issue.message == "unknown job 'unti' (did you mean 'unit'?)"


def test_self_dependency() -> None:
    issue = only_error(MINIMAL + "    needs: [unit]\n")
    assert issue.message == "job 'unit' cannot depend on itself"


def test_cycle_detection_reports_path() -> None:
    issue = only_error(
        spec("""
        version: 1
        jobs:
          a: {kind: script, script: x, needs: [c]}
          b: {kind: script, script: x, needs: [a]}
          c: {kind: script, script: x, needs: [b]}
          d: {kind: script, script: x, needs: [a]}
    """)
    )
    assert (issue.line, issue.path) == (3, "jobs.a.needs[0]")
    assert issue.message == "dependency cycle: a -> c -> b -> a"


@pytest.mark.parametrize(
    ("cron", "fragment"),
    [
        ("0 25 * * *", "invalid cron expression '0 25 * * *'"),
        ("0 3 * *", "expected 5 fields"),
        ("0 0 3 * * 1", "expected 5 fields"),
        ("@fortnightly", "unknown cron macro"),
    ],
)
def test_bad_cron(cron: str, fragment: str) -> None:
    issue = only_error(MINIMAL + f'schedules:\n  nightly: "{cron}"\n')
    assert (issue.line, issue.path) == (7, "schedules.nightly")
    assert fragment in issue.message


def test_cron_macros_are_expanded() -> None:
    parsed = parse_spec(MINIMAL + "schedules: {nightly: '@daily', weekly: ' 0  3 * * mon '}\n")
    crons = {name: schedule.cron for name, schedule in parsed.schedules.items()}
    assert crons == {"nightly": "0 0 * * *", "weekly": "0 3 * * mon"}


def test_reproducibility_command_needs_placeholders() -> None:
    issue = only_error(
        spec("""
        version: 1
        jobs:
          r: {kind: reproducibility, command: "predict {input}", input: i, expected: e}
    """)
    )
    assert (issue.path, issue.message) == (
        "jobs.r.command",
        "must contain the {output} placeholder",
    )


def test_deploy_environment_must_exist() -> None:
    issue = only_error(
        spec("""
        version: 1
        environments: {staging: {}, production: {required_approvals: 1}}
        jobs:
          ship: {kind: deploy, script: [./deploy.sh], environment: prodution}
    """)
    )
    assert issue.message == "unknown environment 'prodution' (did you mean 'production'?)"


def test_retrain_on_drift_needs_train_job() -> None:
    issue = only_error(MINIMAL + "monitor: {reference: ref.csv, on_drift: retrain}\n")
    assert (issue.line, issue.path) == (6, "monitor.on_drift")


def test_gate_requires_metrics() -> None:
    issue = only_error(
        spec("""
        version: 1
        jobs:
          t: {kind: train, script: [python train.py], gate: {metric: f1}}
    """)
    )
    assert issue.message == (
        "'metrics' is required when 'gate' is set; 'model' is required when 'gate' is set"
    )


# ------------------------------------------------------------------ YAML-level problems


def test_duplicate_key_reported_with_line() -> None:
    issue = only_error(MINIMAL + "    kind: build\n")
    assert (issue.line, issue.path) == (6, "jobs.unit.kind")
    assert issue.message == "duplicate key 'kind' (first defined on line 4)"


def test_yaml_syntax_error_has_line_and_column() -> None:
    issue = only_error("version: 1\njobs:\n  a: {kind: test\n  b: [\n")
    assert (issue.line, issue.column) == (4, 4)  # where the unclosed `{` could not continue
    assert issue.message.startswith("YAML syntax error:")
    bad_indent = only_error("version: 1\njobs:\n  a:\n    kind: test\n   script: x\n")
    assert bad_indent.line == 5


def test_non_string_keys_are_rejected() -> None:
    issue = only_error(MINIMAL + "environments:\n  on: {}\n")
    assert issue.line == 7
    assert issue.message == "key 'on' is read as !!bool; quote it"


def test_python_object_tag_is_rejected_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    issue = only_error(MINIMAL + f'variables: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert (issue.line, issue.path) == (6, "variables")
    assert "unsupported YAML tag '!!python/object/apply:os.system'" in issue.message
    assert not marker.exists()


def test_alias_bomb_is_rejected() -> None:
    lines = ["version: 1", "a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefgh":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]")
    assert "document too complex" in only_error("\n".join(lines)).message


def test_recursive_alias_is_rejected() -> None:
    assert "recursive" in only_error("version: 1\njobs: &j\n  a: *j\n").message


def test_oversized_input_rejected() -> None:
    big = MINIMAL + "# " + "x" * MAX_SPEC_BYTES + "\n"
    assert "too large" in only_error(big).message
    assert "too large" in only_error(big.encode()).message


def test_bytes_input_and_bad_encoding() -> None:
    assert parse_spec(b"\xef\xbb\xbf" + MINIMAL.encode()).jobs["unit"].kind == "test"
    issue = only_error(MINIMAL.encode() + b"# caf\xe9\n")
    assert (issue.line, issue.message) == (6, "file is not valid UTF-8")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a list\n", "just a string\n"])
def test_empty_or_non_mapping_document(text: str) -> None:
    assert only_error(text).message in {"spec is empty", "top level must be a mapping"}


def test_non_finite_numbers_rejected() -> None:
    issue = only_error(MINIMAL + "    variables: {X: .nan}\n")
    assert (issue.path, issue.message) == (
        "jobs.unit.variables.X",
        "must be a finite number (got nan)",
    )


# ------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../secrets", "a/../../b", "a/..", "~/x", "C:\\x", "a\\..\\b"]
)
def test_absolute_or_parent_paths_rejected(path: str) -> None:
    issue = only_error(MINIMAL + f"    artifacts: [{json.dumps(path)}]\n")
    assert (issue.line, issue.path) == (6, "jobs.unit.artifacts[0]")
    assert "relative path" in issue.message


@pytest.mark.parametrize("path", ["reports/*.xml", "./out", "..hidden", "a/..b/c", "**/*.log"])
def test_relative_paths_accepted(path: str) -> None:
    assert parse_spec(MINIMAL + f"    artifacts: [{json.dumps(path)}]\n").jobs[
        "unit"
    ].artifacts == (path,)


# ------------------------------------------------------------------ API helpers


def test_errors_are_all_collected_and_sorted() -> None:
    text = spec("""
        version: 1
        jobs:
          a: {kind: script, script: x, needs: [zz]}
          b: {kind: nope, script: x}
        extra: true
    """)
    issues = errors(text)
    assert [i.line for i in issues] == sorted(i.line for i in issues) == [3, 4, 5]
    assert [d["path"] for d in SpecError(issues).to_list()] == [
        "jobs.a.needs[0]",
        "jobs.b.kind",
        "extra",
    ]


def test_topological_order_is_stable() -> None:
    parsed = parse_spec(
        spec("""
        version: 1
        jobs:
          deploy: {kind: deploy, script: x, needs: [build, docs]}
          docs: {kind: script, script: x}
          build: {kind: build, needs: [lint, unit]}
          unit: {kind: test, script: x}
          lint: {kind: script, script: x}
    """)
    )
    assert parsed.topological_order() == ["docs", "unit", "lint", "build", "deploy"]
    assert parse_spec(FULL_EXAMPLE).topological_order() == ["test", "build", "reproduce", "train"]


@pytest.mark.parametrize(
    ("ref_type", "name", "expected"),
    [
        ("branch", "main", True),
        ("branch", "refs/heads/main", True),
        ("branch", "release/1.2", True),
        ("branch", "release-1.2", False),
        ("branch", "feature/x", False),
        ("branch", "release/wip", False),
        ("tag", "v1.0.0", True),
        ("tag", "refs/tags/v1.0.0-rc1", False),
        ("tag", "nightly", False),
    ],
)
def test_ref_matches(ref_type: str, name: str, expected: bool) -> None:
    parsed = parse_spec(
        MINIMAL
        + spec("""
        branches: {only: [main, "release/*"], except: [release/wip]}
        tags: {only: ["v*"], except: ["*-rc*"]}
    """)
    )
    assert ref_matches(parsed, ref_type, name) is expected  # type: ignore[arg-type]


def test_ref_matches_without_filters_allows_everything() -> None:
    parsed = parse_spec(MINIMAL)
    assert ref_matches(parsed, "branch", "anything") and ref_matches(parsed, "tag", "v1")
    with pytest.raises(ValueError):
        ref_matches(parsed, "commit", "abc")  # type: ignore[arg-type]


def test_to_dict_round_trips_through_json() -> None:
    parsed = parse_spec(FULL_EXAMPLE)
    stored = json.loads(json.dumps(parsed.to_dict(), allow_nan=False))
    assert stored == parsed.to_dict()
    assert stored["jobs"]["build"]["options"]["dockerfile"] == "Dockerfile"
    assert PipelineSpec.from_dict(stored) == parsed


def test_schema_is_valid_and_published() -> None:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "https://controlplane.local/schemas/pipeline-spec-v1.json"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert Draft202012Validator(schema).is_valid(parse_spec(FULL_EXAMPLE).raw)


def test_documentation_examples_stay_accurate() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "pipeline-spec.md").read_text(encoding="utf-8")
    full_example, error_example = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    assert "deploy-staging" in parse_spec(full_example).jobs
    expected_output = re.findall(r"```text\n(.*?)```", doc, re.S)[0].strip()
    with pytest.raises(SpecError) as caught:
        parse_spec(error_example)
    assert str(caught.value) == expected_output


def test_in_image_must_name_a_build_job_it_needs():
    base = (
        "version: 1\njobs:\n  build: {kind: build}\n  unit: {kind: test, script: [pytest]}\n"
        "  check:\n    kind: reproducibility\n    needs: [build, unit]\n"
        "    command: 'p {input} {output}'\n    input: i.csv\n    expected: e.csv\n"
    )
    ok = parse_spec((base + "    in_image: build\n").encode())
    assert ok.jobs["check"].options["in_image"] == "build"
    for wrong in ("unit", "nope"):
        with pytest.raises(SpecError, match="in_image: must name a build job this job needs"):
            parse_spec((base + f"    in_image: {wrong}\n").encode())
    with pytest.raises(SpecError, match="in_image"):
        parse_spec(b"version: 1\njobs:\n  unit: {kind: test, script: [x], in_image: b}\n")


# ------------------------------------------------------------------ warnings


def test_keys_not_acted_on_are_warned_about_with_their_line() -> None:
    """`monitor` is real now (the CM loop) and warns no more, like train jobs, gates and
    schedules; a `monitor.retrain` block that `on_drift: alert` never uses is warned about."""
    text = spec("""
        version: 1
        jobs:
          unit: {kind: test, script: pytest -q}
          fit:
            kind: train
            script: python train.py
            metrics: metrics.json
            model: model.joblib
            gate: {metric: f1}
        monitor:
          reference: data/reference.csv
          retrain: {cooldown: 1h}
        schedules:
          nightly: "@daily"
    """)
    assert parse_spec(text).warnings == (
        "`monitor.retrain` (line 12) is accepted but not acted on yet: on_drift is not "
        "'retrain', so a drift starts no run",
    )
    assert (
        parse_spec(text.replace("cooldown: 1h}", "cooldown: 1h}\n  on_drift: retrain")).warnings
        == ()
    )


def test_a_spec_using_only_what_works_has_no_warnings() -> None:
    assert parse_spec(MINIMAL).warnings == ()
    assert parse_spec(MINIMAL + "schedules: {}\n").warnings == ()


def test_warnings_survive_the_json_round_trip() -> None:
    parsed = parse_spec(FULL_EXAMPLE.replace("on_drift: retrain", "retrain: {min_rows: 10}"))
    assert [w.split(" is accepted")[0] for w in parsed.warnings] == ["`monitor.retrain` (line 13)"]
    stored = json.loads(json.dumps(parsed.to_dict()))
    assert stored["warnings"] == list(parsed.warnings)
    assert PipelineSpec.from_dict(stored).warnings == parsed.warnings
    del stored["warnings"]  # a run stored before warnings existed
    assert PipelineSpec.from_dict(stored).warnings == ()


def test_a_build_keeps_its_model_name():
    """The registered model's name reaches the job (it was dropped, and every model was named
    after its file)."""
    parsed = parse_spec(
        "version: 1\njobs:\n  build:\n    kind: build\n    model: out/m.joblib\n"
        "    model_name: churn\n"
    )
    assert parsed.jobs["build"].options["model_name"] == "churn"
