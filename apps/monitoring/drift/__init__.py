"""The drift engine: NumPy/SciPy only (no Django), whole-array operations, Evidently 0.7's
choice of tests and its verdicts. See docs/drift.md."""

from .engine import column_drift, dataset_drift, default_test
from .performance import performance
from .results import (
    CATEGORICAL,
    KINDS,
    NUMERIC,
    TESTS,
    ColumnConfig,
    ColumnResult,
    DatasetResult,
    TestInfo,
)
from .samples import infer_kind

__all__ = [
    "CATEGORICAL",
    "KINDS",
    "NUMERIC",
    "TESTS",
    "ColumnConfig",
    "ColumnResult",
    "DatasetResult",
    "TestInfo",
    "column_drift",
    "dataset_drift",
    "default_test",
    "infer_kind",
    "performance",
]
