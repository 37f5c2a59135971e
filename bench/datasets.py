"""Datasets: ``describe()`` of a 1M-row CSV next to the floor, ``sha256sum`` of the same file
in the same run (describe hashes every byte too, and also parses and types every row), and
fake-data generation in rows per second (with and without the check against the real rows).

    .venv/bin/python bench/datasets.py [--rows 1000000] [--fake-rows 200000]
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.training.datafiles import describe, sha256_file  # noqa: E402
from apps.training.fakedata import generate  # noqa: E402
from apps.training.profile import profile  # noqa: E402


def make_csv(path: Path, rows: int) -> None:
    rng = random.Random(1)
    with open(path, "w") as f:
        f.write("id,amount,churned,signup,plan,note\n")
        for i in range(rows):
            f.write(
                f"{i},{rng.random() * 1000:.2f},{rng.random() < 0.3},"
                f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},"
                f"{rng.choice(['basic', 'pro', 'team'])},note {rng.randint(0, 10**9)}\n"
            )


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--fake-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cp-bench-data-") as tmp:
        path = Path(tmp) / "real.csv"
        make_csv(path, args.rows)
        size = os.path.getsize(path)
        floor = timed(
            lambda: subprocess.run(["sha256sum", path], check=True, capture_output=True),
            args.repeat,
        )
        ours = timed(lambda: describe(path), args.repeat)
        hashlib_floor = timed(lambda: sha256_file(path), args.repeat)
        print(f"CSV: {args.rows} rows, {size / 1e6:.1f} MB (page cache warm)")
        print(f"  sha256sum (floor): {floor * 1000:8.1f} ms  {size / floor / 1e6:7.0f} MB/s")
        print(f"  describe():        {ours * 1000:8.1f} ms  {size / ours / 1e6:7.0f} MB/s")
        print(f"  ratio describe / sha256sum: {ours / floor:.1f}x")
        print(
            f"  (hashlib in-process, OpenSSL: {hashlib_floor * 1000:.1f} ms; "
            f"describe / hashlib {ours / hashlib_floor:.1f}x)"
        )
        start = time.perf_counter()
        prof = profile(path)
        print(f"  profile():         {(time.perf_counter() - start) * 1000:8.1f} ms")
        n = args.fake_rows
        bare = timed(lambda: generate(prof, n, 1, out=Path(tmp) / "f.csv", real=None), 3)
        checked = timed(lambda: generate(prof, n, 1, out=Path(tmp) / "f.csv", real=path), 3)
        print(f"fake data, {n} rows of the same schema (CSV written):")
        print(f"  unchecked:                 {n / bare:10.0f} rows/s")
        print(
            f"  checked against {args.rows} real rows: {n / checked:10.0f} rows/s "
            f"({checked:.2f} s: includes reading and hashing every real row)"
        )


if __name__ == "__main__":
    main()
