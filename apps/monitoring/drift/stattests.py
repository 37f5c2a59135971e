"""The statistics, each on prepared data (sorted arrays or counts), computed the way Evidently
0.7's legacy stattests define them so that scores and verdicts agree with it.

Numeric tests take ``Numeric`` samples (sorted finite values); the count tests take two
count arrays over the same categories; the binned distances take two share arrays."""

from __future__ import annotations

import math

import numpy as np

from .samples import CHUNK, Numeric

# TRICKY: SciPy is imported inside the tests that need it: ``scipy.stats`` alone adds ~70 MiB
# to a process, and the default tests on a large reference (Wasserstein, Jensen–Shannon) need
# none of it.

# scipy's ks_2samp is exact up to this many values per side, asymptotic above.
KS_EXACT_MAX = 10_000


def ks(ref: Numeric, cur: Numeric) -> float:
    """Two-sample Kolmogorov–Smirnov p-value (two-sided; scipy's ``method="auto"``)."""
    from scipy import stats

    if max(ref.n, cur.n) <= KS_EXACT_MAX:
        return float(stats.ks_2samp(ref.sorted, cur.sorted).pvalue)
    d = _ks_statistic(ref.sorted, cur.sorted)
    n1, n2 = ref.n, cur.n
    en = n1 * n2 / (n1 + n2)
    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    # The largest gap between the two empirical CDFs sits at one of the sample points; at a
    # point of ``a`` it is |F_a - F_b| with both CDFs taken right-continuous (ties included).
    best = 0.0
    for sample, other, n_s, n_o in ((a, b, a.size, b.size), (b, a, b.size, a.size)):
        for start in range(0, sample.size, CHUNK):
            x = sample[start : start + CHUNK]
            f_s = np.searchsorted(sample, x, side="right") / n_s
            f_o = np.searchsorted(other, x, side="right") / n_o
            best = max(best, float(np.max(np.abs(f_s - f_o))))
    return best


def wasserstein_norm(ref: Numeric, cur: Numeric) -> float:
    """Wasserstein-1 distance divided by the reference's standard deviation (at least 0.001)."""
    return wasserstein(ref.sorted, cur.sorted) / max(ref.std(), 0.001)


def wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    """W1 between two sorted samples as the area between their quantile functions,
    ∫₀¹ |U⁻¹(t) − V⁻¹(t)| dt, without merging them.

    Both quantile functions are steps: U⁻¹ jumps at t = i/n, V⁻¹ at t = j/m. On the integer grid
    T = t·n·m the breakpoints are i·m and j·n. Every breakpoint ends one interval; the one
    ending at i·m starts at the larger of (i−1)·m and the last j·n below it, and on it
    U⁻¹ = u[i−1] and V⁻¹ = v[⌈i·m/n⌉−1] — likewise for the ones ending at j·n. So the integral
    is a sum over the n + m breakpoints computed in two vectorised passes (in chunks, to keep
    the temporaries small)."""
    n, m = u.size, v.size
    if n == m:  # the quantile functions step together: the mean gap of the sorted samples
        scratch = np.empty(min(CHUNK, n))
        total = 0.0
        for start in range(0, n, CHUNK):
            part = scratch[: min(CHUNK, n - start)]
            np.subtract(u[start : start + CHUNK], v[start : start + CHUNK], out=part)
            np.abs(part, out=part)
            total += float(part.sum())
        return total / n
    total = _breakpoint_sum(u, v, n, m, ties_first=True) + _breakpoint_sum(
        v, u, m, n, ties_first=False
    )
    return total / (n * m)


def _breakpoint_sum(a: np.ndarray, b: np.ndarray, n: int, m: int, *, ties_first: bool) -> float:
    # Intervals ending at T = i·m (i = 1..n) of sample ``a``; ``b`` steps at j·n. When a
    # breakpoint of both samples coincides, the one of ``a`` (ties_first) ends the real interval
    # and the other one ends an empty one.
    total = 0.0
    for start in range(1, n + 1, CHUNK):
        i = np.arange(start, min(start + CHUNK, n + 1), dtype=np.int64)
        t = i * m
        if ties_first:
            j = -(-t // n)  # ceil(t / n): b's step that covers t
            prev_b = (j - 1) * n
        else:
            j = t // n + 1  # a tie belongs to the other sample's (earlier) breakpoint
            prev_b = (t // n) * n
        start_t = np.maximum(t - m, prev_b)
        width = (t - start_t).astype(np.float64)
        gap = np.abs(a[i - 1] - b[np.minimum(j, m) - 1])
        total += float((width * gap).sum())
    return total


def chisquare(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Pearson's chi-square p-value of the current counts against the reference's proportions
    scaled to the current size (a category the reference never had makes it 0)."""
    k = ref_counts.size
    if k < 2:
        return 1.0
    n_ref, n_cur = ref_counts.sum(), cur_counts.sum()
    expected = ref_counts * (n_cur / n_ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (cur_counts - expected) ** 2 / expected
    statistic = float(terms.sum())
    if math.isinf(statistic):
        return 0.0
    from scipy import special

    return float(special.chdtrc(k - 1, statistic))


def z(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Two-proportion Z-test p-value: the first (smallest) category against all others."""
    n1, n2 = int(ref_counts.sum()), int(cur_counts.sum())
    if ref_counts.size == 1 or (
        np.count_nonzero(ref_counts) == 1
        and np.count_nonzero(cur_counts) == 1
        and np.argmax(ref_counts) == np.argmax(cur_counts)
    ):
        return 1.0
    p1 = (n1 - int(ref_counts[0])) / n1
    p2 = (n2 - int(cur_counts[0])) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    statistic = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    from scipy import special

    return float(2 * special.ndtr(-abs(statistic)))


def fill_zeroes(shares: np.ndarray) -> np.ndarray:
    """Empty bins get a small share so that the logarithms stay finite: a millionth of the
    smallest non-empty share when that is at most 0.0001, else 0.0001 (Evidently's rule)."""
    out = shares.astype(np.float64, copy=True)
    nonzero = out[out != 0]
    if nonzero.size == 0:
        return out
    smallest = nonzero.min()
    out[out == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return out


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    r, c = fill_zeroes(ref), fill_zeroes(cur)
    return float(np.sum((r - c) * np.log(r / c)))


def kl_div(ref: np.ndarray, cur: np.ndarray) -> float:
    r, c = fill_zeroes(ref), fill_zeroes(cur)
    r, c = r / r.sum(), c / c.sum()
    return float(np.sum(r * np.log(r / c)))


def jensenshannon(ref: np.ndarray, cur: np.ndarray) -> float:
    """Jensen–Shannon distance (natural log; the square root of the divergence)."""
    r, c = ref / ref.sum(), cur / cur.sum()
    mid = (r + c) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(r > 0, r * np.log(r / mid), 0.0)
        right = np.where(c > 0, c * np.log(c / mid), 0.0)
    divergence = (left.sum() + right.sum()) / 2
    return float(math.sqrt(max(divergence, 0.0)))


def hellinger(ref: np.ndarray, cur: np.ndarray) -> float:
    """Hellinger distance between two share vectors: sqrt(1 − Σ sqrt(p·q))."""
    coefficient = float(np.clip(np.sum(np.sqrt(ref * cur)), 0.0, 1.0))
    return math.sqrt(1.0 - coefficient)
