"""Drift injected → alert delivered: the time from the moment a service's observations start
drifting until the Slack message about it arrives, with a real worker running beat (``-B``),
on PostgreSQL + Redis.

    .venv/bin/python bench/drift_alert.py [--rounds 5] [--every 10] [--check-delay 6]
                                          [--due-interval 3] [--group-wait 0]

A project monitors production (``monitor.every`` = ``--every`` seconds, a 2,000-row reference
of six normal features committed in its repository, ``on_drift: alert``); a Slack target
takes warnings. This script plays the service: every 0.25 s it posts 10 observations through
the ingest API (the real view, token and store, through Django's test client) — like the
reference until a round injects drift: four of the six features shifted by one standard
deviation, from the start of a window (the earliest a drift can begin in one). Beat finds the
window due ``--check-delay`` seconds after it closes (looking every ``--due-interval`` s), the
worker checks it on the monitor queue, fires ``dataset_drift``, dispatches it at once (group
wait ``--group-wait``), and the notifications app posts it with the real slack-sdk to a fake
Slack on 127.0.0.1 (tests/notifications/fakeslack.py), which notes when it arrived. Then the
drift stops, a calm window resolves the alert, and the next round begins.

The floor in the same run is the check interval: a drift that begins with a window cannot be
checked before that window closes. Goal: latency ≤ one check interval + 10 s. Where the time
goes comes from the rows' timestamps (window end, check stored, alert fired, message in).
"""

import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import _stack

FEATURES = ("f0", "f1", "f2", "f3", "f4", "f5")
DRIFTED = ("f0", "f1", "f2", "f3")
CHANNEL = "C0BENCH"


def spec(every: int) -> str:
    return f"""version: 1
jobs:
  t: {{kind: script, script: ["true"]}}
monitor:
  reference: data/reference.csv
  features: [{", ".join(FEATURES)}]
  every: {every}s
  min_rows: 100
  on_drift: alert
"""


def reference_csv(rows: int = 2000) -> str:
    import numpy as np

    rng = np.random.default_rng(1)
    data = rng.normal(0.0, 1.0, (rows, len(FEATURES)))
    lines = [",".join(FEATURES)] + [",".join(f"{v:.5f}" for v in row) for row in data]
    return "\n".join(lines) + "\n"


class Service:
    """Posts observations as a deployed service's telemetry would."""

    def __init__(self, client, environment, token: str) -> None:
        import numpy as np

        self.client, self.token = client, token
        self.url = f"/api/v1/environments/{environment.pk}/observations/"
        self.rng = np.random.default_rng(2)
        self.n = 0

    def post(self, *, shift: float, rows: int = 10) -> None:
        import json

        values = self.rng.normal(0.0, 1.0, (rows, len(FEATURES)))
        now = datetime.now(tz=UTC).isoformat()
        columns = {
            "request_id": [f"r{self.n + i}" for i in range(rows)],
            "timestamp": [now] * rows,
            "prediction": [0] * rows,
        }
        for j, name in enumerate(FEATURES):
            columns[name] = [float(v) + (shift if name in DRIFTED else 0.0) for v in values[:, j]]
        self.n += rows
        response = self.client.post(
            self.url,
            data=json.dumps({"columns": columns}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if response.status_code not in (200, 201, 202):
            raise SystemExit(f"ingest refused a batch: {response.status_code} {response.content!r}")


def drift_messages(slack) -> list[dict]:
    from tests.notifications.fakeslack import api_calls
    from tests.notifications.slackblocks import blocks_of, blocks_text

    return [
        r
        for r in api_calls(slack, "chat.postMessage")
        if "Data drift in production" in blocks_text(blocks_of(r))
    ]


def feed_until(service, predicate, *, shift: float, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.post(shift=shift)
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def main() -> None:
    args = _stack.parse_args(
        __doc__,
        rounds={"type": int, "default": 5},
        every={"type": int, "default": 10, "help": "monitor.every, seconds"},
        # The settings' defaults (controlplane/settings/base.py).
        check_delay={"type": int, "default": 6},
        due_interval={"type": int, "default": 3},
        group_wait={"type": int, "default": 0},
    )
    if args.embedded:
        raise SystemExit("drift_alert.py runs on PostgreSQL + Redis only")
    from tests.notifications.fakeslack import start_slack, stop

    slack = start_slack()
    os.environ.update(
        {
            "CONTROLPLANE_MONITOR_DUE_INTERVAL": str(args.due_interval),
            "CONTROLPLANE_MONITOR_CHECK_DELAY_SECONDS": str(args.check_delay),
            "CONTROLPLANE_ALERT_GROUP_WAIT_SECONDS": str(args.group_wait),
            "SLACK_API_URL": slack.url + "/api/",
            "SLACK_BOT_TOKEN": "xoxb-bench",
        }
    )
    var = _stack.setup(args, "drift_alert")
    import pipeline_latency
    from django.test import Client
    from django.utils import timezone

    from apps.monitoring.choices import AlertStatus, CheckStatus
    from apps.monitoring.models import Alert, DriftCheck
    from apps.monitoring.services.ingest import ingest_token_create
    from apps.notifications.models import NotificationTarget
    from apps.pipelines import git
    from apps.pipelines import services as pipeline_services
    from apps.projects.services import project_create
    from apps.projects.spec import parse_spec
    from apps.releases.choices import DeploymentStatus
    from apps.releases.models import Deployment
    from apps.releases.services import release_create

    url, _ = pipeline_latency.make_repo()
    work = Path(url.removeprefix("file://"))
    (work / ".controlplane.yml").write_text(spec(args.every))
    (work / "data").mkdir()
    (work / "data" / "reference.csv").write_text(reference_csv())
    sha = pipeline_latency.commit_all(work, "monitor production")
    project = project_create(name="bench", slug="bench", actor="bench", repository_url=url)
    production = project.environments.get(name="production")
    run = pipeline_services.run_create(
        project=project, actor="bench", jobs=[{"name": "t", "script": ["true"]}]
    )
    run.spec = parse_spec(spec(args.every)).to_dict()
    run.commit_sha = sha
    run.save(update_fields=["spec", "commit_sha"])
    release = release_create(
        project=project, version="v1", commit_sha=sha, actor="bench", pipeline_run=run
    )
    Deployment.objects.create(
        release=release,
        environment=production,
        status=DeploymentStatus.SUCCEEDED,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    production.pipeline_commit_sha = sha
    production.save(update_fields=["pipeline_commit_sha"])
    git.mirror_update(project)
    NotificationTarget.objects.create(
        project=project, kind="slack", destination=CHANNEL, min_severity="warning"
    )
    _token, raw = ingest_token_create(environment=production, name="bench", actor="bench")
    service = Service(Client(HTTP_HOST="127.0.0.1"), production, raw)

    worker = _stack.start_worker(concurrency=4, beat=True)
    every = args.every
    latencies, phases = [], {}
    try:
        for n in range(args.rounds):
            # Calm: a whole window checked OK (and, after a round, the drift alert resolved).
            calm = datetime.now(tz=UTC)
            feed_until(
                service,
                lambda calm=calm: (
                    DriftCheck.objects.filter(
                        environment=production, window_start__gte=calm, status=CheckStatus.OK
                    ).exists()
                    and not Alert.objects.filter(
                        rule="dataset_drift", status=AlertStatus.FIRING
                    ).exists()
                ),
                shift=0.0,
                timeout=6 * every + 60,
                what="a calm window checked OK",
            )
            # Drift from the next window's start on.
            epoch = time.time()
            start = epoch - epoch % every + every
            while time.time() < start:
                service.post(shift=0.0)
                time.sleep(min(0.25, max(0.0, start - time.time())))
            told = len(drift_messages(slack))
            message = feed_until(
                service,
                lambda told=told: drift_messages(slack)[told:],
                shift=1.0,
                timeout=3 * every + 60,
                what="the drift alert in Slack",
            )[0]
            latency = message["at"] - start
            latencies.append(latency)
            window_start = datetime.fromtimestamp(start, tz=UTC)
            check = DriftCheck.objects.filter(
                environment=production, window_start=window_start
            ).first()
            if check is None:
                windows = DriftCheck.objects.filter(environment=production).order_by("-pk")
                recent = [(c.window_start, c.status, c.created) for c in windows[:6]]
                raise SystemExit(f"no check of the window from {window_start}: {recent}; {message}")
            alert = Alert.objects.filter(rule="dataset_drift").order_by("-pk").first()
            window_end = check.window_end.timestamp()
            for name, a, b in (
                ("drift starts -> its window closes", start, window_end),
                ("window closes -> check stored", window_end, check.created.timestamp()),
                (
                    "check stored -> alert fired",
                    check.created.timestamp(),
                    alert.created.timestamp(),
                ),
                ("alert fired -> Slack message in", alert.created.timestamp(), message["at"]),
            ):
                phases.setdefault(name, []).append(b - a)
            print(f"round {n + 1}: drift → Slack {latency:.2f} s (window {every} s)", flush=True)
    finally:
        _stack.stop(worker)
        stop(slack)
        _stack.cleanup(var)

    goal = every + 10
    median = statistics.median(latencies)
    print()
    print(
        f"{_stack.stack_name(args)}; monitor.every {every} s, check delay {args.check_delay} s, "
        f"due checks every {args.due_interval} s, group wait {args.group_wait} s; "
        f"{len(latencies)} rounds"
    )
    print(
        f"drift injected → alert in Slack: median {median:.2f} s, max {max(latencies):.2f} s, "
        f"min {min(latencies):.2f} s"
    )
    print(f"floor (the check interval: the window must close): {every:.2f} s")
    print(
        f"ratio median / floor {median / every:.2f}x; over the floor by {median - every:.2f} s "
        f"(goal: ≤ {goal} s = one interval + 10 s: {'met' if max(latencies) <= goal else 'NOT met'}"
        ")"
    )
    for name, values in phases.items():
        print(
            f"  {name}: median {statistics.median(values) * 1000:.0f} ms, "
            f"max {max(values) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
