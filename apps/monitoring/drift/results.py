"""The engine's inputs and outputs, and the table of tests it knows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NUMERIC = "numeric"
CATEGORICAL = "categorical"
KINDS = (NUMERIC, CATEGORICAL)


@dataclass(frozen=True)
class TestInfo:
    """One drift test: which column kinds it applies to, its default threshold (Evidently's),
    and whether its score is a p-value (drift when small) or a distance (drift when large)."""

    __test__ = False  # not a pytest class

    name: str
    kinds: tuple[str, ...]
    threshold: float
    p_value: bool
    label: str


TESTS: dict[str, TestInfo] = {
    t.name: t
    for t in (
        TestInfo("ks", (NUMERIC,), 0.05, True, "K-S p-value"),
        TestInfo("wasserstein", (NUMERIC,), 0.1, False, "Wasserstein distance (normed)"),
        TestInfo("psi", KINDS, 0.1, False, "PSI"),
        TestInfo("kl_div", KINDS, 0.1, False, "Kullback-Leibler divergence"),
        TestInfo("jensenshannon", KINDS, 0.1, False, "Jensen-Shannon distance"),
        TestInfo("chisquare", (CATEGORICAL,), 0.05, True, "chi-square p-value"),
        TestInfo("z", (CATEGORICAL,), 0.05, True, "Z-test p-value"),
        TestInfo("hellinger", KINDS, 0.1, False, "Hellinger distance"),
    )
}


def is_drift(test: str, score: float, threshold: float) -> bool:
    """Evidently's comparisons: K-S drifts at p <= threshold, chi-square and Z at p < threshold,
    every distance at score >= threshold."""
    if test == "ks":
        return score <= threshold
    if TESTS[test].p_value:
        return score < threshold
    return score >= threshold


@dataclass(frozen=True)
class ColumnConfig:
    """How to check one column. ``test=None`` picks Evidently's default for the data;
    ``threshold=None`` takes the test's default. ``kind=None`` infers it from the reference."""

    name: str
    kind: str | None = None
    test: str | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"column {self.name!r}: kind must be numeric or categorical")
        if self.test is not None:
            info = TESTS.get(self.test)
            if info is None:
                raise ValueError(
                    f"column {self.name!r}: unknown test {self.test!r} (one of {', '.join(TESTS)})"
                )
            if self.kind is not None and self.kind not in info.kinds:
                raise ValueError(
                    f"column {self.name!r}: test {self.test!r} does not apply to {self.kind} data"
                )


@dataclass
class ColumnResult:
    """One column's verdict; the fields map one to one to ``models.ColumnDrift``.

    ``score`` is None (and ``drifted`` False) when either side has no usable value.
    ``missing_share`` is the current window's share of missing (null, NaN, ±inf) values;
    ``out_of_range`` counts current values outside the reference's [min, max] (numeric);
    ``new_categories`` counts distinct current categories the reference never had."""

    column: str
    kind: str
    test: str
    score: float | None
    threshold: float
    drifted: bool
    missing_share: float = 0.0
    out_of_range: int = 0
    new_categories: int = 0
    histogram: dict[str, Any] = field(default_factory=dict)
    reference_rows: int = 0
    current_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "test": self.test,
            "score": self.score,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "missing_share": self.missing_share,
            "out_of_range": self.out_of_range,
            "new_categories": self.new_categories,
            "histogram": self.histogram,
        }


@dataclass
class DatasetResult:
    """The dataset's verdict: drift when the share of drifted columns reaches ``share_threshold``.
    Columns without a score (no data on one side) are left out of the share."""

    columns: list[ColumnResult]
    drift_share: float
    dataset_drift: bool
    drifted_columns: list[str]
    share_threshold: float

    def column(self, name: str) -> ColumnResult:
        for result in self.columns:
            if result.column == name:
                return result
        raise KeyError(name)
