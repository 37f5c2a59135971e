"""Column data made ready for the tests: numeric columns become sorted float64 arrays of their
finite values; categorical pairs become counts over one shared, sorted list of categories.
Every step is a whole-array NumPy or Arrow operation."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from .results import CATEGORICAL, NUMERIC

# TRICKY: PyArrow is imported only for Arrow inputs and categorical columns (it adds ~35 MiB to
# a process that never needs it: numeric NumPy columns).


def _is_arrow(values) -> bool:
    return type(values).__module__.startswith("pyarrow")


# Evidently's rule for integer columns: few distinct values make them categorical.
INTEGER_CARDINALITY_LIMIT = 10
# Elements per pass of the chunked loops: small enough to stay in the CPU's cache.
CHUNK = 1 << 16


def _arrow(values):
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    array = np.asarray(values)
    if array.dtype.kind in "US":
        return pa.array(array.astype(object), from_pandas=True)
    return pa.array(array, from_pandas=True)


def as_float(values) -> np.ndarray:
    """A float64 array with NaN for missing values (no copy for a float64 numpy array)."""
    if _is_arrow(values):
        import pyarrow as pa
        import pyarrow.compute as pc

        array = _arrow(values)
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
    array = np.asarray(values)
    if array.dtype == np.float64:
        return array
    if array.dtype.kind in "biuf":
        return array.astype(np.float64)
    import pyarrow as pa

    return pa.array(array, from_pandas=True).cast(pa.float64()).to_numpy(zero_copy_only=False)


def infer_kind(values) -> str:
    """Evidently's inference (``infer_column_type``): floats are numeric; integers are
    categorical with at most 10 distinct values, else numeric; strings, booleans, dictionary
    (pandas category) arrays are categorical. Object arrays of numbers are numeric."""
    if _is_arrow(values):
        return _infer_arrow_kind(values)
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return NUMERIC
    if array.dtype.kind in "iu":
        distinct = np.unique(array).size
        return CATEGORICAL if distinct <= INTEGER_CARDINALITY_LIMIT else NUMERIC
    if array.dtype.kind == "O":
        import pyarrow as pa

        try:
            arrow = pa.array(array, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return CATEGORICAL
        if pa.types.is_null(arrow.type):
            return CATEGORICAL
        return _infer_arrow_kind(arrow)
    return CATEGORICAL


def _infer_arrow_kind(values) -> str:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind_of = values.type
    if pa.types.is_dictionary(kind_of):
        return CATEGORICAL
    if pa.types.is_floating(kind_of) or pa.types.is_decimal(kind_of):
        return NUMERIC
    if pa.types.is_integer(kind_of):
        distinct = pc.count_distinct(values, mode="only_valid").as_py()
        return CATEGORICAL if distinct <= INTEGER_CARDINALITY_LIMIT else NUMERIC
    return CATEGORICAL


class Numeric:
    """The finite values of one numeric column, sorted once; the rest is counted as missing.

    ``buffer`` (at least as long as the column) is reused for the sorted copy: across the
    columns of a dataset that saves a fresh allocation — and its page faults — per column."""

    def __init__(self, values, buffer: np.ndarray | None = None) -> None:
        array = as_float(values)
        self.total = int(array.size)
        finite = np.isfinite(array)
        n = int(np.count_nonzero(finite))
        out = np.empty(n) if buffer is None or buffer.size < n else buffer[:n]
        if n == self.total:
            np.copyto(out, array)
        else:
            np.compress(finite, array, out=out)
        out.sort()
        self.sorted = out
        self.n = n
        self.missing = self.total - n

    @property
    def min(self) -> float:
        return float(self.sorted[0])

    @property
    def max(self) -> float:
        return float(self.sorted[-1])

    @cached_property
    def uniques(self) -> np.ndarray:
        s = self.sorted
        if s.size == 0:
            return s
        keep = np.empty(s.size, dtype=bool)
        keep[0] = True
        np.not_equal(s[1:], s[:-1], out=keep[1:])
        return s[keep]

    def nunique_above(self, limit: int) -> bool:
        """Whether there are more than ``limit`` distinct values, without a full pass when a
        few evenly spread probes already show enough of them."""
        if self.n <= limit:
            return self.uniques.size > limit
        probes = np.unique(self.sorted[np.linspace(0, self.n - 1, 4 * limit + 4).astype(np.int64)])
        if probes.size > limit:
            return True
        return self.uniques.size > limit

    def std(self) -> float:
        """Population standard deviation (``np.std``), in cache-sized chunks."""
        s = self.sorted
        mean = float(s.sum()) / self.n
        scratch = np.empty(min(CHUNK, self.n))
        total = 0.0
        for start in range(0, self.n, CHUNK):
            part = scratch[: min(CHUNK, self.n - start)]
            np.subtract(s[start : start + CHUNK], mean, out=part)
            np.square(part, out=part)  # not np.dot: BLAS threads contend on a busy machine
            total += float(part.sum())
        return (total / self.n) ** 0.5

    def counts_at(self, keys: np.ndarray) -> np.ndarray:
        """How many values equal each of the sorted ``keys``."""
        s = self.sorted
        return np.searchsorted(s, keys, side="right") - np.searchsorted(s, keys, side="left")

    def histogram(self, edges: np.ndarray) -> np.ndarray:
        """np.histogram's counts over ``edges`` (the last bin closed), from the sorted values."""
        s = self.sorted
        cum = np.empty(edges.size, dtype=np.int64)
        cum[:-1] = np.searchsorted(s, edges[:-1], side="left")
        cum[-1] = np.searchsorted(s, edges[-1], side="right")
        return np.diff(cum)


def union_uniques(ref: Numeric, cur: Numeric) -> np.ndarray:
    return np.union1d(ref.uniques, cur.uniques)


def union_nunique(ref: Numeric, cur: Numeric) -> int:
    a, b = ref.uniques, cur.uniques
    if a.size == 0 or b.size == 0:
        return int(a.size + b.size)
    at = np.searchsorted(a, b).clip(max=a.size - 1)
    common = int(np.count_nonzero(a[at] == b))
    return int(a.size + b.size - common)


class Categorical:
    """A reference/current pair of one categorical column as counts over their union of
    categories, in sorted order (the order Evidently's Z-test takes its first key from)."""

    def __init__(self, reference, current) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        ref, cur = _arrow(reference), _arrow(current)
        ref, cur = _common_type(ref), _common_type(cur)
        if ref.type != cur.type:
            # 1 and 1.0 are one category; otherwise compare the text of the values.
            numeric = all(_is_number(t) for t in (ref.type, cur.type))
            target = pa.float64() if numeric else pa.string()
            ref, cur = ref.cast(target), cur.cast(target)
        self.ref_total, self.cur_total = len(ref), len(cur)
        encoded = pc.dictionary_encode(pa.chunked_array([ref, cur]).combine_chunks())
        categories = encoded.dictionary
        order = pc.sort_indices(categories).to_numpy()
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(order.size)
        self.categories: list = categories.take(pa.array(order)).to_pylist()
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        k = len(self.categories)
        self.ref_counts = _count(codes[: self.ref_total], rank, k)
        self.cur_counts = _count(codes[self.ref_total :], rank, k)
        self.ref_n = int(self.ref_counts.sum())
        self.cur_n = int(self.cur_counts.sum())
        self.ref_missing = self.ref_total - self.ref_n
        self.cur_missing = self.cur_total - self.cur_n

    def present(self) -> tuple[np.ndarray, np.ndarray]:
        """Counts over the categories seen in the non-missing data of either side."""
        seen = (self.ref_counts + self.cur_counts) > 0
        return self.ref_counts[seen], self.cur_counts[seen]


def _is_number(arrow_type) -> bool:
    import pyarrow as pa

    return (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_null(arrow_type)
    )


def _common_type(array):
    import pyarrow as pa

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    return array


def _count(codes: np.ndarray, rank: np.ndarray, k: int) -> np.ndarray:
    valid = codes[codes >= 0]
    return np.bincount(rank[valid], minlength=k).astype(np.int64)
