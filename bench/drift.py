"""The drift engine on 1,000,000 rows × 20 numeric features (reference and current window of
that many rows each, some features shifted by 0.2 standard deviations and one widened), next to
Evidently 0.7.23 (``Report([DataDriftPreset()])``) on the same data. Each side runs in a
subprocess of its own that makes the data the same way (same seed), so that its peak memory
(``ru_maxrss``) is its own; the data itself is in that figure, and printed on its own. Also
printed: the floor (sorting every column of both sides once — the least an exact rank-based
test does) measured in the same run, the verdicts' agreement and the ratio.

    .venv/bin/python bench/drift.py [--rows 1000000] [--features 20] [--repeat 3]
                                    [--no-evidently]

Goals: ≤ 1 s, ≤ 400 MiB, ≥ 100× faster than Evidently.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def shifted(features: int) -> tuple[list[int], int]:
    """Every fourth feature has its mean moved by 0.2 standard deviations; the last one has its
    spread widened by 30 %."""
    return list(range(0, features, 4)), features - 1


def make(rows: int, features: int, current: bool):
    """A (rows × features) float64 array in column order, made in place (no temporaries)."""
    import numpy as np

    rng = np.random.default_rng(2 if current else 1)
    data = np.empty((rows, features), order="F")
    moved, widened = shifted(features)
    for i in range(features):
        column = data[:, i]
        rng.standard_normal(out=column)
        std = 1.0 + i % 3
        if current and i == widened:
            std *= 1.3
        column *= std
        column += 10.0 * i + (0.2 * std if current and i in moved else 0.0)
    return data


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, rows: int, features: int, repeat: int) -> None:
    import numpy as np

    names = [f"f{i}" for i in range(features)]
    ref, cur = make(rows, features, False), make(rows, features, True)
    data_peak = rss_mib()
    times = []
    imported = data_peak
    from apps.monitoring.drift.results import is_drift

    if kind == "ours":
        from apps.monitoring.drift import ColumnConfig, dataset_drift

        imported = rss_mib()
        reference = {n: ref[:, i] for i, n in enumerate(names)}
        current = {n: cur[:, i] for i, n in enumerate(names)}
        configs = [ColumnConfig(n, "numeric") for n in names]
        for _ in range(repeat):
            start = time.perf_counter()
            result = dataset_drift(reference, current, configs)
            times.append(time.perf_counter() - start)
        verdicts = {c.column: [c.test, c.score, c.drifted] for c in result.columns}
        dataset = [result.drift_share, result.dataset_drift]
    elif kind == "floor":
        for _ in range(repeat):
            start = time.perf_counter()
            for i in range(features):
                np.sort(ref[:, i])
                np.sort(cur[:, i])
            times.append(time.perf_counter() - start)
        verdicts, dataset = {}, []
    else:
        import warnings

        import pandas as pd
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        sys.path.insert(0, str(ROOT / "tests" / "monitoring" / "drift"))
        from evidently_oracle import TEST_NAMES

        definition = DataDefinition(numerical_columns=names)
        reference = pd.DataFrame(ref, columns=names, copy=False)
        current = pd.DataFrame(cur, columns=names, copy=False)
        warnings.simplefilter("ignore")
        imported = rss_mib()
        start = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        metrics = snapshot.dict()["metrics"]
        times.append(time.perf_counter() - start)
        verdicts, dataset = {}, []
        for metric in metrics:
            config = metric["config"]
            if config["type"].endswith(":DriftedColumnsCount"):
                dataset = [metric["value"]["share"], int(metric["value"]["count"])]
            elif config["type"].endswith(":ValueDrift"):
                test = TEST_NAMES[config["method"]]
                score = float(metric["value"])
                # ValueDrift reports the score and threshold; the verdict is Evidently's
                # comparison of the two (its count of drifted columns is printed next to it).
                verdicts[config["column"]] = [
                    test,
                    score,
                    is_drift(test, score, config["threshold"]),
                ]
    print(
        json.dumps(
            {
                "times": times,
                "peak_mib": rss_mib(),
                "data_mib": data_peak,
                "imported_mib": imported,
                "verdicts": verdicts,
                "dataset": dataset,
            }
        )
    )


def run(kind: str, args) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--rows",
            str(args.rows),
            "--features",
            str(args.features),
            "--repeat",
            str(args.repeat),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows, args.features, args.repeat)
        return
    moved, widened = shifted(args.features)
    print(
        f"{args.rows:,} rows x {args.features} numeric features, reference and current each; "
        f"shifted 0.2 std: {', '.join(f'f{i}' for i in moved)}; widened 30 %: f{widened}"
    )
    data_mib = args.rows * args.features * 8 * 2 / 2**20
    floor = run("floor", args)
    ours = run("ours", args)
    ours_time = statistics.median(ours["times"])
    floor_time = statistics.median(floor["times"])
    print(f"floor, np.sort of every column of both sides: median {floor_time * 1000:.0f} ms")
    print(
        f"ours: median {ours_time * 1000:.0f} ms (min {min(ours['times']) * 1000:.0f}) over "
        f"{len(ours['times'])} runs; peak RSS {ours['peak_mib']:.0f} MiB"
    )
    print(
        f"  of which Python + NumPy + the data ({data_mib:.0f} MiB of float64) "
        f"{ours['data_mib']:.0f} MiB, + importing the engine "
        f"{ours['imported_mib'] - ours['data_mib']:.0f} MiB, + the engine's work "
        f"{ours['peak_mib'] - ours['imported_mib']:.0f} MiB"
    )
    print(f"  ours / floor: {ours_time / floor_time:.1f}x (goal: <= 1 s, <= 400 MiB)")
    drifted = sorted(c for c, v in ours["verdicts"].items() if v[2])
    print(
        f"  tests: {sorted({v[0] for v in ours['verdicts'].values()})}; drifted: {drifted}; "
        f"share {ours['dataset'][0]:.2f}, dataset drift {ours['dataset'][1]}"
    )
    if args.no_evidently:
        return
    ev = run("evidently", args)
    ev_time = ev["times"][0]
    print(
        f"Evidently DataDriftPreset: {ev_time:.1f} s; peak RSS {ev['peak_mib']:.0f} MiB "
        f"(Python + NumPy + the data {ev['data_mib']:.0f} MiB, + importing Evidently "
        f"{ev['imported_mib'] - ev['data_mib']:.0f} MiB, + its work "
        f"{ev['peak_mib'] - ev['imported_mib']:.0f} MiB)"
    )
    same = [c for c in ours["verdicts"] if ours["verdicts"][c][2] == ev["verdicts"][c][2]]
    same_test = [c for c in ours["verdicts"] if ours["verdicts"][c][0] == ev["verdicts"][c][0]]
    worst = max(
        abs(ours["verdicts"][c][1] - ev["verdicts"][c][1]) / max(abs(ev["verdicts"][c][1]), 1e-12)
        for c in ours["verdicts"]
    )
    print(
        f"  verdicts agree on {len(same)}/{len(ours['verdicts'])} columns, tests on "
        f"{len(same_test)}; Evidently's drifted count {ev['dataset'][1]}, share "
        f"{ev['dataset'][0]:.2f} vs ours "
        f"{ours['dataset'][0]:.2f}; largest relative score difference {worst:.1e}"
    )
    print(
        f"ratio Evidently / ours: {ev_time / ours_time:.0f}x faster (goal >= 100x), "
        f"{ev['peak_mib'] / ours['peak_mib']:.1f}x less peak memory"
    )


if __name__ == "__main__":
    main()
