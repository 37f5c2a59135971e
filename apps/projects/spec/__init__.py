"""Pipeline spec (`.controlplane.yml`): JSON Schema, parser and normalised dataclasses."""

from apps.projects.spec.parser import (
    JOB_KINDS,
    MAX_SPEC_BYTES,
    SCHEMA_PATH,
    SPEC_FILENAME,
    EnvironmentSpec,
    JobSpec,
    MonitorSpec,
    PipelineSpec,
    RefFilter,
    ServeSpec,
    SpecError,
    SpecIssue,
    cron_problem,
    load_schema,
    parse_spec,
    ref_matches,
)

__all__ = [
    "JOB_KINDS",
    "MAX_SPEC_BYTES",
    "SCHEMA_PATH",
    "SPEC_FILENAME",
    "EnvironmentSpec",
    "JobSpec",
    "MonitorSpec",
    "PipelineSpec",
    "RefFilter",
    "ServeSpec",
    "SpecError",
    "SpecIssue",
    "cron_problem",
    "load_schema",
    "parse_spec",
    "ref_matches",
]
