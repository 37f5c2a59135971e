"""Compare a model's predictions with a frozen reference CSV, cell by cell, absolute tolerance.

Stdlib only, so it also runs inside a job's container::

    python -m apps.pipelines.reproducibility EXPECTED ACTUAL --tolerance 1e-6 [--key id] \
        [--json out.json]

Rows are aligned by the key column (``--key``, else ``id`` when present) or by position.
Both files are streamed; only rows that are out of order are held, keyed, until their
partner turns up.

:func:`extract_model` hands a check the model its build job bundled, so what is checked is
the model that ships.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import posixpath
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Difference:
    key: str  # the key column's value, or the 1-based data row number when aligned by position
    column: str
    expected: str
    actual: str
    abs_diff: float | None  # None: not both numeric, compared as text


@dataclass
class ComparisonResult:
    passed: bool
    reason: str
    tolerance: float
    columns: list[str]
    key_column: str | None = None  # None: rows aligned by position
    rows_expected: int = 0
    rows_actual: int = 0
    rows_compared: int = 0
    rows_outside: int = 0  # compared rows with at least one cell that differs
    max_abs_diff: float = 0.0  # over all numeric cells; inf when NaN/inf meets a number
    max_abs_diff_at: tuple[str, str] | None = None  # (key, column)
    examples: list[Difference] = field(default_factory=list)  # first differing cells
    rows_missing: int = 0  # expected rows absent from actual
    rows_extra: int = 0  # actual rows absent from expected
    rows_duplicate: int = 0  # rows whose key was already seen in the same file
    missing_keys: list[str] = field(default_factory=list)  # first max_examples of them
    extra_keys: list[str] = field(default_factory=list)
    duplicate_keys: list[str] = field(default_factory=list)

    def where(self, key: str) -> str:
        return f"{self.key_column}={key}" if self.key_column else f"row {key}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: NaN and infinities become the strings ``"nan"``, ``"inf"``, ``"-inf"``."""
        return _json_safe(asdict(self))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _abs_diff(x: float, y: float) -> float:
    if x == y or (math.isnan(x) and math.isnan(y)):
        return 0.0
    d = abs(x - y)
    return math.inf if math.isnan(d) else d  # NaN vs number, inf vs -inf


def _new(k: str, seen_e: set[str], seen_a: set[str]) -> bool:
    """Whether ``k`` is in neither file so far; if so, mark it seen in both."""
    if k in seen_e or k in seen_a:
        return False
    seen_e.add(k)
    seen_a.add(k)
    return True


def _num(x: float) -> str:
    return f"{x:.3g}"


def compare_predictions(
    expected_path: Path,
    actual_path: Path,
    *,
    tolerance: float,
    key: str | None = None,
    max_examples: int = 10,
) -> ComparisonResult:
    """Compare two CSV files; never raises for content problems (see ``reason``), only for I/O."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    with (
        open(expected_path, newline="", encoding="utf-8-sig") as fe,
        open(actual_path, newline="", encoding="utf-8-sig") as fa,
    ):
        exp_rows = (r for r in csv.reader(fe) if r)  # blank lines are not rows
        act_rows = (r for r in csv.reader(fa) if r)
        exp_head, act_head = next(exp_rows, None), next(act_rows, None)
        res = ComparisonResult(False, "", tolerance, exp_head or [])
        if exp_head is None or act_head is None:
            res.reason = f"{'expected' if exp_head is None else 'actual'} file is empty (no header)"
            return res
        dupes = sorted({c for h in (exp_head, act_head) for c, n in Counter(h).items() if n > 1})
        if dupes:
            res.reason = f"duplicate column names: {dupes}"
            return res
        exp_set, act_set = set(exp_head), set(act_head)
        missing = [c for c in exp_head if c not in act_set]
        extra = [c for c in act_head if c not in exp_set]
        if missing or extra:  # the same columns in another order are fine
            res.reason = (
                f"header mismatch: columns missing from actual {missing}, "
                f"extra columns in actual {extra}"
            )
            return res
        if key is None and "id" in exp_head:
            key = "id"
        if key is not None and key not in exp_head:
            res.reason = f"key column {key!r} not in header {exp_head}"
            return res
        res.key_column = key
        _compare_rows(res, exp_rows, act_rows, [act_head.index(c) for c in exp_head], max_examples)
    return res


def _compare_rows(
    res: ComparisonResult,
    exp_rows: Iterator[list[str]],
    act_rows: Iterator[list[str]],
    act_idx: list[int],
    max_examples: int,
) -> None:
    cols, tol, width = res.columns, res.tolerance, len(res.columns)
    ki = cols.index(res.key_column) if res.key_column else None
    pad = [""] * width
    exp = (r if len(r) >= width else r + pad[len(r) :] for r in exp_rows)
    if act_idx == list(range(width)):
        act = (r if len(r) >= width else r + pad[len(r) :] for r in act_rows)
    else:  # same columns, another order: put actual's cells in expected's order
        act = ([r[j] if j < len(r) else "" for j in act_idx] for r in act_rows)

    def compare(k: str, e: list[str], a: list[str]) -> None:
        res.rows_compared += 1
        row_bad = False
        for c, x, y in zip(cols, e, a, strict=False):
            if x == y:
                continue
            try:
                d: float | None = _abs_diff(float(x), float(y))
            except ValueError:
                d = None
            if d is not None:
                if d > res.max_abs_diff or res.max_abs_diff_at is None:
                    res.max_abs_diff, res.max_abs_diff_at = d, (k, c)
                if d <= tol:
                    continue
            row_bad = True
            if len(res.examples) < max_examples:
                res.examples.append(Difference(k, c, x, y, d))
        res.rows_outside += row_bad

    pend_e: dict[str, list[str]] = {}  # rows still waiting for their partner
    pend_a: dict[str, list[str]] = {}
    seen_e: set[str] = set()  # keys read so far, to catch duplicates
    seen_a: set[str] = set()
    dups = 0

    def arrive(row: list[str], seen: set[str], mine: dict, other: dict, is_exp: bool) -> None:
        nonlocal dups
        k = row[ki]
        if k in seen:
            dups += 1
            if len(res.duplicate_keys) < max_examples:
                res.duplicate_keys.append(k)
            return
        seen.add(k)
        if k not in other:
            mine[k] = row
        elif is_exp:
            compare(k, row, other.pop(k))
        else:
            compare(k, other.pop(k), row)

    for n, (e, a) in enumerate(zip_longest(exp, act), start=1):
        res.rows_expected += e is not None
        res.rows_actual += a is not None
        if ki is None:  # aligned by position: a lone row is missing or extra
            if e is not None and a is not None:
                compare(str(n), e, a)
            else:
                (pend_e if a is None else pend_a)[str(n)] = []
        elif e is not None and a is not None and e[ki] == a[ki] and _new(e[ki], seen_e, seen_a):
            compare(e[ki], e, a)  # the common case: same key at the same position
        else:
            if e is not None:
                arrive(e, seen_e, pend_e, pend_a, True)
            if a is not None:
                arrive(a, seen_a, pend_a, pend_e, False)
    res.rows_missing, res.rows_extra, res.rows_duplicate = len(pend_e), len(pend_a), dups
    res.missing_keys = list(pend_e)[:max_examples]
    res.extra_keys = list(pend_a)[:max_examples]
    res.passed = not (res.rows_outside or pend_e or pend_a or dups)
    res.reason = _reason(res)


def _reason(res: ComparisonResult) -> str:
    tol, n = _num(res.tolerance), res.rows_compared
    if res.passed:
        return f"all {n} rows within {tol} (max abs diff {_num(res.max_abs_diff)})"
    parts = []
    if res.rows_outside:
        if res.max_abs_diff > res.tolerance and res.max_abs_diff_at:
            k, c = res.max_abs_diff_at
            at = f"max abs diff {_num(res.max_abs_diff)} in {c!r} at {res.where(k)}"
        else:  # only text cells differ
            at = f"first in {res.examples[0].column!r} at {res.where(res.examples[0].key)}"
        parts.append(f"{res.rows_outside} of {n} rows differ by more than {tol} ({at})")
    for count, keys, what in (
        (res.rows_missing, res.missing_keys, "expected rows missing from actual"),
        (res.rows_extra, res.extra_keys, "unexpected rows in actual"),
        (res.rows_duplicate, res.duplicate_keys, "rows with a duplicate key"),
    ):
        if count:
            shown = ", ".join(res.where(k) for k in keys[:3]) + (", ..." if count > 3 else "")
            parts.append(f"{count} {what} ({shown})")
    if res.rows_expected != res.rows_actual:
        parts.insert(
            0, f"row count differs (expected {res.rows_expected}, actual {res.rows_actual})"
        )
    return "; ".join(parts)


def format_report(result: ComparisonResult, *, width: int = 32) -> str:
    """Plain text for the job log: verdict, then the differing cells side by side."""
    lines = [f"{'PASS' if result.passed else 'FAIL'}: {result.reason}"]
    if result.rows_expected or result.rows_actual:  # the headers matched and rows were read
        lines.append(
            f"aligned by: {result.key_column or 'row position'}; tolerance: "
            f"{_num(result.tolerance)} (absolute); columns: {', '.join(result.columns)}"
        )

    def cut(s: str) -> str:
        return s if len(s) <= width else s[: width - 3] + "..."

    if result.examples:
        table = [("key", "column", "expected", "actual", "abs diff")] + [
            (
                cut(d.key),
                cut(d.column),
                cut(d.expected),
                cut(d.actual),
                "text" if d.abs_diff is None else _num(d.abs_diff),
            )
            for d in result.examples
        ]
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        table.insert(1, tuple("-" * w for w in widths))
        lines.append("")
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in table
        ]
    for keys, what in (
        (result.missing_keys, "missing from actual"),
        (result.extra_keys, "extra in actual"),
    ):
        if keys:
            lines.append(f"{what}: " + ", ".join(result.where(k) for k in keys))
    return "\n".join(lines)


class ModelHandoffError(Exception):
    """The build's model could not be put into the check's workspace; the message says why."""


def extract_model(bundle: Path, member: str, dest: Path, *, digest: str) -> str:
    """Copy ``member`` (the model file a build declared) out of its ``.tar.gz`` bundle to
    ``dest`` and check it is the file the build recorded: ``digest`` is ``sha256:<hex>``.
    Returns the digest of what was written."""
    name = posixpath.normpath(member)
    try:
        with tarfile.open(bundle, mode="r:gz") as tar:
            info = tar.getmember(name)
            source = tar.extractfile(info) if info.isfile() else None
            if source is None:
                raise ModelHandoffError(f"{name} in the bundle is not a file.")
            dest.parent.mkdir(parents=True, exist_ok=True)
            sha = hashlib.sha256()
            with source, open(dest, "wb") as out:
                while chunk := source.read(1 << 20):
                    sha.update(chunk)
                    out.write(chunk)
    except KeyError:
        raise ModelHandoffError(f"The bundle {bundle.name} holds no {name}.") from None
    except (OSError, tarfile.TarError) as exc:
        raise ModelHandoffError(f"The bundle {bundle.name} cannot be read: {exc}") from None
    got = "sha256:" + sha.hexdigest()
    if got != digest:
        dest.unlink(missing_ok=True)
        raise ModelHandoffError(f"{name} in the bundle is {got}, the build recorded {digest}.")
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps.pipelines.reproducibility",
        description="Compare predictions with a reference CSV (absolute tolerance).",
    )
    parser.add_argument("expected", type=Path)
    parser.add_argument("actual", type=Path)
    parser.add_argument("--tolerance", type=float, required=True)
    parser.add_argument("--key", default=None, help="key column (default: id, if present)")
    parser.add_argument("--max-examples", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    try:
        result = compare_predictions(
            args.expected,
            args.actual,
            tolerance=args.tolerance,
            key=args.key,
            max_examples=args.max_examples,
        )
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
