"""Observation ingest: rows/s of 20 features through the real API, memory over the run.

    .venv/bin/python bench/ingest.py [--rows 10000] [--batches 60] [--clients 2] [--workers 2]

Over HTTP to a live gunicorn (``--workers`` sync workers, default 2 for 2 cores) serving the
control plane on its own PostgreSQL database: an environment serving a model version whose
reference has 20 numeric features, and its ingest token. ``--clients`` threads post
pre-built batches of ``--rows`` rows (keep-alive) in each shape: gzipped NDJSON (what the
example's client sends), JSON rows, JSON columns, each gzipped, and every batch must be 201.
Prints rows/s per shape, the workers' RSS after the warm-up and at the end and their peak
(VmHWM), the stored row count (must equal what was sent), and the floor measured in the same
run: a bare pyarrow write (``pa.table`` from the same column lists + Parquet zstd, what a
batch ends as) of the same rows, in this process.
"""

import gzip
import http.client
import json
import os
import random
import resource
import signal
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _stack

FEATURES = [f"f{i}" for i in range(20)]


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(p) for p in (task / "children").read_text().split()]
    return out


def memory(pids: list[int]) -> dict[str, float]:
    """RSS and peak RSS (MiB) of each worker."""
    found = {}
    for pid in pids:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        found[pid] = (
            int(fields["VmRSS"].split()[0]) / 1024,
            int(fields["VmHWM"].split()[0]) / 1024,
        )
    return found


def make_rows(n: int, start: datetime, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = {
            "request_id": f"{seed}-{i}",
            "timestamp": (start + timedelta(microseconds=i * 1000))
            .isoformat()
            .replace("+00:00", "Z"),
            "prediction": rng.random() > 0.5,
            "latency_ms": round(rng.uniform(1, 9), 3),
        }
        for name in FEATURES:
            row[name] = round(rng.gauss(0, 1), 5)
        rows.append(row)
    return rows


def bodies(rows: list[dict], mv: int) -> dict[str, tuple[bytes, str, str]]:
    """shape -> (gzipped body, content type, query)."""
    columns = {key: [r[key] for r in rows] for key in rows[0]}
    ndjson = b"\n".join(json.dumps(r).encode() for r in rows)
    return {
        "ndjson": (gzip.compress(ndjson, 5), "application/x-ndjson", f"?model_version={mv}"),
        "rows": (
            gzip.compress(json.dumps({"model_version": mv, "rows": rows}).encode(), 5),
            "application/json",
            "",
        ),
        "columns": (
            gzip.compress(json.dumps({"model_version": mv, "columns": columns}).encode(), 5),
            "application/json",
            "",
        ),
    }


def floor(rows_per_batch: int, batches: list[list[dict]], tmp: Path) -> float:
    """A bare pyarrow write of the same rows: rows/s."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    started = time.perf_counter()
    total = 0
    for i, rows in enumerate(batches):
        columns = {key: [r[key] for r in rows] for key in rows[0]}
        columns["timestamp"] = pc.cast(
            pa.array(columns["timestamp"], pa.string()), pa.timestamp("us", tz="UTC")
        )
        pq.write_table(pa.table(columns), tmp / f"floor-{i}.parquet", compression="zstd")
        total += len(rows)
    return total / (time.perf_counter() - started)


def post_all(port: int, token: str, env_id: int, work: list, clients: int) -> tuple[float, int]:
    """Post every (body, type, query) in ``work`` from ``clients`` threads; (seconds, rows)."""
    lock = threading.Lock()
    queue = list(work)
    done = {"rows": 0}
    errors = []

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not queue:
                    break
                body, ctype, query, n = queue.pop()
            conn.request(
                "POST",
                f"/api/v1/environments/{env_id}/observations/{query}",
                body=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": ctype,
                    "Content-Encoding": "gzip",
                },
            )
            response = conn.getresponse()
            answer = response.read()
            if response.status != 201:
                errors.append((response.status, answer[:300]))
                break
            with lock:
                done["rows"] += n
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"refused: {errors[0]}")
    return time.perf_counter() - started, done["rows"]


def main() -> None:
    args = _stack.parse_args(
        __doc__.splitlines()[0],
        rows={"type": int, "default": 10_000, "help": "rows per batch"},
        batches={"type": int, "default": 60, "help": "batches per shape"},
        clients={"type": int, "default": 2},
        workers={"type": int, "default": 2},
    )
    var = _stack.setup(args, "ingest")
    os.environ["CONTROLPLANE_OBSERVATION_DIR"] = str(var / "observations")
    from apps.monitoring.models import ObservationBatch
    from apps.monitoring.services.ingest import ingest_token_create
    from apps.projects.models import Environment
    from apps.projects.services import project_create
    from apps.releases.choices import DeploymentStatus
    from apps.releases.models import Deployment, Release
    from apps.training.models import Dataset, DatasetVersion, ModelVersion

    project = project_create(name="bench", slug="bench", actor="bench")
    environment = Environment.objects.get(project=project, name="production")
    tmp = Path(tempfile.mkdtemp(prefix="ingest-", dir=var))
    csv = tmp / "train.csv"
    rng = random.Random(1)
    lines = [",".join([*FEATURES, "label"])]
    lines += [
        ",".join(f"{rng.gauss(0, 1):.4f}" for _ in FEATURES) + f",{i % 2}" for i in range(2000)
    ]
    csv.write_text("\n".join(lines) + "\n")
    dataset = Dataset.objects.create(project=project, name="features")
    dv = DatasetVersion.objects.create(
        dataset=dataset, version=1, fingerprint="bench", format="csv", path=str(csv)
    )
    mv = ModelVersion.objects.create(project=project, name="m", version=1)
    mv.trained_on.add(dv)
    from apps.pipelines.models import PipelineRun

    run = PipelineRun.objects.create(
        project=project,
        number=1,
        ref="main",
        commit_sha="0" * 40,
        spec={"raw": {"monitor": {"target": "label"}}},
    )
    release = Release.objects.create(
        project=project, version="v1", commit_sha="0" * 40, model_version=mv, pipeline_run=run
    )
    Deployment.objects.create(
        release=release, environment=environment, status=DeploymentStatus.SUCCEEDED
    )
    _token, raw = ingest_token_create(environment=environment, name="bench", actor="bench")

    start = datetime.now(UTC) - timedelta(hours=1)
    print(f"building {args.batches} batches of {args.rows} rows x {len(FEATURES)} features ...")
    distinct = [make_rows(args.rows, start, seed) for seed in range(4)]
    prebuilt = [bodies(rows, mv.pk) for rows in distinct]
    for shape in ("ndjson", "rows", "columns"):
        size = len(prebuilt[0][shape][0])
        print(f"  {shape}: {size / 1e6:.1f} MB gzipped per batch")

    floor_rate = floor(args.rows, [distinct[i % 4] for i in range(min(args.batches, 20))], tmp)

    port = _stack.free_port()
    web = _stack.gunicorn(
        "controlplane.wsgi:application",
        port,
        cwd=Path(__file__).resolve().parents[1],
        workers=args.workers,
        timeout=120,
    )
    try:
        time.sleep(1.0)
        workers = children(web.pid)
        # Warm-up: the reference is built, each worker's caches filled.
        warm = [(*prebuilt[0]["ndjson"], args.rows)] * (2 * args.workers)
        post_all(port, raw, environment.pk, warm, args.clients)
        after_warmup = memory(workers)
        results = {}
        rss_after_each = {}
        for shape in ("ndjson", "columns", "rows"):
            work = [(*prebuilt[i % 4][shape], args.rows) for i in range(args.batches)]
            seconds, sent = post_all(port, raw, environment.pk, work, args.clients)
            results[shape] = sent / seconds
            rss_after_each[shape] = memory(workers)
        end = memory(workers)
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)

    from django.db.models import Sum

    stored = ObservationBatch.objects.aggregate(n=Sum("rows"))["n"]
    expected = args.rows * (args.batches * 3 + 2 * args.workers)
    print()
    print(
        f"stack: {_stack.stack_name(args)}; gunicorn {args.workers} sync workers; "
        f"{args.clients} client threads; {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}"
    )
    print(f"floor, bare pyarrow write of the same rows: {floor_rate:,.0f} rows/s")
    for shape, rate in results.items():
        print(
            f"API {shape:8s} (gzip): {rate:,.0f} rows/s = {rate / floor_rate:.0%} of the floor "
            f"(goal >= 100,000 rows/s)"
        )
    for label, snapshot in (("after warm-up", after_warmup), *rss_after_each.items()):
        rss = ", ".join(f"{v[0]:.0f}" for v in snapshot.values())
        print(f"  workers' RSS after {label}: {rss} MiB")
    print(f"  workers' peak RSS (VmHWM): {', '.join(f'{v[1]:.0f}' for v in end.values())} MiB")
    client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  bench process peak RSS (pre-built bodies): {client_peak:.0f} MiB")
    print(
        f"stored rows: {stored:,} (sent {expected:,}) {'OK' if stored == expected else 'MISMATCH'}"
    )
    _stack.cleanup(var)


if __name__ == "__main__":
    main()
