"""Pipeline spec (`.controlplane.yml`): JSON Schema, parser and normalised dataclasses.

`parser.parse_spec` is the entry point; it uses `loader` (YAML with line positions), `schema`
(the JSON Schema and its messages) and `checks` + `checks_jobs` (semantic checks and warnings),
and returns the dataclasses of `parsed`. `params` checks the values given to a named pipeline's
typed parameters (`validate_params`).
"""

from apps.projects.spec.checks import cron_problem
from apps.projects.spec.loader import MAX_SPEC_BYTES
from apps.projects.spec.params import ParamError, ParamSpec, param_variables, validate_params
from apps.projects.spec.parsed import (
    SPEC_FILENAME,
    EnvironmentSpec,
    GateSpec,
    JobSpec,
    MonitorAlertsSpec,
    MonitorColumnSpec,
    MonitorSpec,
    NamedPipelineSpec,
    PerformanceAlertSpec,
    PipelineSpec,
    RefFilter,
    RetrainSpec,
    ScheduleSpec,
    ServeSpec,
    SpecError,
    SpecIssue,
    ref_matches,
    topological_order,
)
from apps.projects.spec.parser import JOB_KINDS, parse_spec
from apps.projects.spec.schema import SCHEMA_PATH, load_schema

__all__ = [
    "JOB_KINDS",
    "MAX_SPEC_BYTES",
    "SCHEMA_PATH",
    "SPEC_FILENAME",
    "EnvironmentSpec",
    "GateSpec",
    "JobSpec",
    "MonitorAlertsSpec",
    "MonitorColumnSpec",
    "MonitorSpec",
    "NamedPipelineSpec",
    "PerformanceAlertSpec",
    "ParamError",
    "ParamSpec",
    "PipelineSpec",
    "RefFilter",
    "RetrainSpec",
    "ScheduleSpec",
    "ServeSpec",
    "SpecError",
    "SpecIssue",
    "cron_problem",
    "load_schema",
    "param_variables",
    "parse_spec",
    "ref_matches",
    "topological_order",
    "validate_params",
]
