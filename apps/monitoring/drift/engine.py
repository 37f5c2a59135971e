"""One column's drift verdict and the dataset's, with Evidently's choice of test.

Evidently 0.7 (``legacy/calculations/stattests/registry.py: _get_default_stattest``) picks, on
the reference's non-missing rows:

- reference ≤ 1000 rows: numeric with more than 5 distinct values (both sides together) → K-S;
  otherwise (categorical, or numeric with ≤ 5 values) chi-square, or the Z-test when there are
  at most 2 distinct values;
- reference > 1000 rows: numeric with more than 5 distinct values → normed Wasserstein;
  otherwise Jensen–Shannon.

Missing values (null, NaN, ±inf) are dropped from both sides before any test."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import stattests
from .results import (
    CATEGORICAL,
    NUMERIC,
    TESTS,
    ColumnConfig,
    ColumnResult,
    DatasetResult,
    is_drift,
)
from .samples import Categorical, Numeric, infer_kind, union_nunique, union_uniques

SMALL_REFERENCE = 1000
FEW_VALUES = 5
HISTOGRAM_BINS = 20
TOP_CATEGORIES = 20
# Evidently bins a numeric column for PSI/KL/JS only above this many distinct reference values;
# at or below it, each value is its own bin.
BINNED_MIN_VALUES = 20


def default_test(kind: str, reference_rows: int, distinct: int) -> str:
    if reference_rows <= SMALL_REFERENCE:
        if kind == NUMERIC and distinct > FEW_VALUES:
            return "ks"
        return "chisquare" if distinct > 2 else "z"
    if kind == NUMERIC and distinct > FEW_VALUES:
        return "wasserstein"
    return "jensenshannon"


class Buffers:
    """Two scratch arrays the numeric columns of one dataset are sorted into, one column at a
    time (results keep no reference to them)."""

    def __init__(self) -> None:
        self.reference = np.empty(0)
        self.current = np.empty(0)

    def fit(self, reference_rows: int, current_rows: int) -> tuple[np.ndarray, np.ndarray]:
        if self.reference.size < reference_rows:
            self.reference = np.empty(reference_rows)
        if self.current.size < current_rows:
            self.current = np.empty(current_rows)
        return self.reference, self.current


def column_drift(
    reference, current, config: ColumnConfig, *, buffers: Buffers | None = None
) -> ColumnResult:
    """The verdict for one column; ``reference``/``current`` are numpy or pyarrow arrays."""
    kind = config.kind or infer_kind(reference)
    if config.test is not None and kind not in TESTS[config.test].kinds:
        raise ValueError(f"column {config.name!r}: test {config.test!r} does not apply to {kind}")
    if kind == NUMERIC:
        ref_buffer = cur_buffer = None
        if buffers is not None:
            ref_buffer, cur_buffer = buffers.fit(len(reference), len(current))
        return _numeric(Numeric(reference, ref_buffer), Numeric(current, cur_buffer), config)
    return _categorical(Categorical(reference, current), config)


def _threshold(config: ColumnConfig, test: str) -> float:
    return float(TESTS[test].threshold if config.threshold is None else config.threshold)


def _verdict(
    config: ColumnConfig, kind: str, test: str, score: float | None, **fields
) -> ColumnResult:
    threshold = _threshold(config, test)
    drifted = score is not None and bool(is_drift(test, score, threshold))
    return ColumnResult(
        column=config.name,
        kind=kind,
        test=test,
        score=score,
        threshold=threshold,
        drifted=drifted,
        **fields,
    )


def _numeric(ref: Numeric, cur: Numeric, config: ColumnConfig) -> ColumnResult:
    fields = {
        "missing_share": cur.missing / cur.total if cur.total else 0.0,
        "reference_rows": ref.n,
        "current_rows": cur.n,
    }
    if ref.n == 0 or cur.n == 0:
        return _verdict(config, NUMERIC, config.test or "ks", None, **fields)
    test = config.test
    if test is None:
        many = ref.nunique_above(FEW_VALUES) or union_nunique(ref, cur) > FEW_VALUES
        distinct = FEW_VALUES + 1 if many else union_nunique(ref, cur)
        test = default_test(NUMERIC, ref.n, distinct)
    score = _numeric_score(test, ref, cur)
    below = int(np.searchsorted(cur.sorted, ref.min, side="left"))
    above = int(cur.n - np.searchsorted(cur.sorted, ref.max, side="right"))
    fields["out_of_range"] = below + above
    fields["histogram"] = _numeric_histogram(ref, cur, below, above)
    return _verdict(config, NUMERIC, test, score, **fields)


def _numeric_score(test: str, ref: Numeric, cur: Numeric) -> float:
    if test == "ks":
        return stattests.ks(ref, cur)
    if test == "wasserstein":
        return stattests.wasserstein_norm(ref, cur)
    if test in ("chisquare", "z"):
        keys = union_uniques(ref, cur)
        ref_counts, cur_counts = ref.counts_at(keys), cur.counts_at(keys)
        return (
            stattests.chisquare(ref_counts, cur_counts)
            if test == "chisquare"
            else (stattests.z(ref_counts, cur_counts))
        )
    if test == "hellinger":
        return stattests.hellinger(*_hellinger_shares(ref, cur))
    ref_shares, cur_shares = _binned_shares(ref, cur)
    return _binned_score(test, ref_shares, cur_shares)


def _binned_score(test: str, ref_shares: np.ndarray, cur_shares: np.ndarray) -> float:
    if test == "psi":
        return stattests.psi(ref_shares, cur_shares)
    if test == "kl_div":
        return stattests.kl_div(ref_shares, cur_shares)
    if test == "jensenshannon":
        return stattests.jensenshannon(ref_shares, cur_shares)
    if test == "hellinger":
        return stattests.hellinger(ref_shares, cur_shares)
    raise ValueError(f"unknown test {test!r}")


def _sturges_edges(count: int, low: float, high: float) -> np.ndarray:
    # np.histogram_bin_edges(values, bins="sturges") for ``count`` values spanning [low, high],
    # with numpy's own floating-point steps so the bin count comes out the same.
    if high <= low:
        return np.array([low - 0.5, low + 0.5])
    span = high - low
    width = span / (np.log2(count) + 1.0)
    bins = int(np.ceil(span / width))
    return np.linspace(low, high, bins + 1, endpoint=True)


def _binned_shares(ref: Numeric, cur: Numeric) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's ``get_binned_data`` for a numeric column: Sturges bins over both samples
    together when the reference has more than 20 distinct values, else one bin per value."""
    if ref.nunique_above(BINNED_MIN_VALUES):
        low, high = min(ref.min, cur.min), max(ref.max, cur.max)
        edges = _sturges_edges(ref.n + cur.n, low, high)
        return ref.histogram(edges) / ref.n, cur.histogram(edges) / cur.n
    keys = union_uniques(ref, cur)
    return ref.counts_at(keys) / ref.n, cur.counts_at(keys) / cur.n


def _hellinger_shares(ref: Numeric, cur: Numeric) -> tuple[np.ndarray, np.ndarray]:
    # Evidently's Hellinger bins numeric data with Sturges over the *distinct* values.
    low, high = min(ref.min, cur.min), max(ref.max, cur.max)
    if high <= low:
        return np.ones(1), np.ones(1)
    edges = _sturges_edges(union_nunique(ref, cur), low, high)
    return ref.histogram(edges) / ref.n, cur.histogram(edges) / cur.n


def _numeric_histogram(ref: Numeric, cur: Numeric, below: int, above: int) -> dict:
    """20 equal bins between the reference's min and max; current values outside that range are
    the ``below``/``above`` shares. Shares are of each side's non-missing values."""
    low, high = ref.min, ref.max
    edges = (
        np.linspace(low, high, HISTOGRAM_BINS + 1)
        if high > low
        else np.array([low - 0.5, low + 0.5])
    )
    cur_counts = cur.histogram(edges)
    return {
        "kind": NUMERIC,
        "edges": [float(e) for e in edges],
        "reference": _shares(ref.histogram(edges), ref.n),
        "current": _shares(cur_counts, cur.n),
        "below": {"reference": 0.0, "current": below / cur.n},
        "above": {"reference": 0.0, "current": above / cur.n},
    }


def _shares(counts: np.ndarray, total: int) -> list[float]:
    return [round(float(c) / total, 6) for c in counts]


def _categorical(pair: Categorical, config: ColumnConfig) -> ColumnResult:
    fields = {
        "missing_share": pair.cur_missing / pair.cur_total if pair.cur_total else 0.0,
        "reference_rows": pair.ref_n,
        "current_rows": pair.cur_n,
    }
    ref_counts, cur_counts = pair.ref_counts, pair.cur_counts
    new = (ref_counts == 0) & (cur_counts > 0)
    fields["new_categories"] = int(np.count_nonzero(new))
    if pair.ref_n == 0 or pair.cur_n == 0:
        return _verdict(config, CATEGORICAL, config.test or "chisquare", None, **fields)
    test = config.test or default_test(CATEGORICAL, pair.ref_n, len(pair.categories))
    if test == "chisquare":
        score = stattests.chisquare(ref_counts, cur_counts)
    elif test == "z":
        score = stattests.z(ref_counts, cur_counts)
    else:
        score = _binned_score(test, ref_counts / pair.ref_n, cur_counts / pair.cur_n)
    fields["histogram"] = _categorical_histogram(pair, new)
    return _verdict(config, CATEGORICAL, test, score, **fields)


def _categorical_histogram(pair: Categorical, new: np.ndarray) -> dict:
    """The most frequent categories (both sides together); the rest summed as ``other``."""
    total = pair.ref_counts / pair.ref_n + pair.cur_counts / pair.cur_n
    top = np.argsort(-total, kind="stable")[:TOP_CATEGORIES]
    ref_top, cur_top = pair.ref_counts[top], pair.cur_counts[top]
    return {
        "kind": CATEGORICAL,
        "categories": [_json_value(pair.categories[i]) for i in top],
        "reference": _shares(ref_top, pair.ref_n),
        "current": _shares(cur_top, pair.cur_n),
        "other": {
            "reference": round(float(pair.ref_n - ref_top.sum()) / pair.ref_n, 6),
            "current": round(float(pair.cur_n - cur_top.sum()) / pair.cur_n, 6),
        },
        "new": [_json_value(pair.categories[i]) for i in np.flatnonzero(new)[:10]],
        "new_rows": int(pair.cur_counts[new].sum()),
    }


def _json_value(value):
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def dataset_drift(
    reference: Mapping[str, object],
    current: Mapping[str, object],
    columns: Sequence[ColumnConfig],
    share: float = 0.5,
) -> DatasetResult:
    """Every column's verdict, and dataset drift when the share of drifted columns (among those
    with a score) is at least ``share``. A column missing from ``current`` is all missing."""
    rows = next((len(values) for values in current.values()), 0)
    buffers = Buffers()
    results = []
    for config in columns:
        if config.name not in reference:
            raise ValueError(f"column {config.name!r} is not in the reference")
        cur = current.get(config.name)
        if cur is None:
            cur = np.full(rows, np.nan)
        results.append(column_drift(reference[config.name], cur, config, buffers=buffers))
    scored = [r for r in results if r.score is not None]
    drifted = [r.column for r in scored if r.drifted]
    drift_share = len(drifted) / len(scored) if scored else 0.0
    return DatasetResult(
        columns=results,
        drift_share=drift_share,
        dataset_drift=bool(scored) and drift_share >= share,
        drifted_columns=drifted,
        share_threshold=share,
    )
