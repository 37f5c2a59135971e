"""The demo's traffic: what a population of customers would send the churn model, and the
outcome learned later. ``manage.py demo_traffic`` runs it (``make demo`` starts it beside the
web, worker and beat processes); ``manage.py demo_drift`` turns the injected drift on or off.

Requests are rows of the example's raw data (``data/raw.csv``, what its model is trained on;
rows without a 0/1 label left out) drawn at random with a little noise, posted to the
environment's service ``/predict`` with a ``request_id`` each. The service logs its
predictions to the control plane itself (its telemetry client); this process only plays the
world, which later tells the control plane the true outcome of each request (``…/labels/``,
with the environment's ingest token).

Drift: ``var/demo-drift`` holds a shift in standard deviations (absent: none), added to the
first four features of every request while it is there, so four of six features drift.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)

# The training data's own rows: traffic without drift looks like the reference (the eval set,
# a different sample, alone made ~3 % of calm windows drift at the K-S test's p < 0.05).
RAW_DATA = settings.BASE_DIR / "examples" / "churn-model" / "data" / "raw.csv"
FEATURES = ("f0", "f1", "f2", "f3", "f4", "f5")
DRIFTED = ("f0", "f1", "f2", "f3")
NOISE = 0.05  # in standard deviations: repeated rows are not identical


def drift_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-drift"


def drift_set(shift: float | None) -> None:
    """Inject a shift of ``shift`` standard deviations (None or 0: no drift)."""
    path = drift_file()
    if not shift:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{shift}\n", encoding="utf-8")


def drift_shift() -> float:
    try:
        return float(drift_file().read_text(encoding="utf-8").strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0.0


@dataclass
class Population:
    rows: list[dict[str, float | None]]
    labels: list[int]
    std: dict[str, float]

    @classmethod
    def load(cls, path: Path = RAW_DATA) -> Population:
        """The rows of a CSV with the six features and a 0/1 ``label`` (others are skipped)."""
        rows, labels = [], []
        with Path(path).open(newline="", encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                if record.get("label") not in ("0", "1"):
                    continue
                rows.append({f: float(record[f]) if record[f] else None for f in FEATURES})
                labels.append(int(record["label"]))
        std = {}
        for f in FEATURES:
            values = [r[f] for r in rows if r[f] is not None]
            mean = sum(values) / len(values)
            std[f] = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5 or 1.0
        return cls(rows=rows, labels=labels, std=std)

    def draw(self, rng: random.Random, shift: float) -> tuple[dict[str, float | None], int]:
        i = rng.randrange(len(self.rows))
        row = {}
        for f, value in self.rows[i].items():
            if value is not None:
                value = value + rng.gauss(0.0, NOISE) * self.std[f]
                if f in DRIFTED:
                    value += shift * self.std[f]
                value = round(value, 4)
            row[f] = value
        return row, self.labels[i]


@dataclass
class Sender:
    """Posts one request at a time to the service and queues the outcome as a label."""

    service_url: str
    labels_url: str
    ingest_token: str
    timeout: float = 2.0
    pending: list[dict] = field(default_factory=list)
    sent: int = 0
    failed: int = 0

    def predict(self, row: dict, label: int) -> bool:
        request_id = uuid.uuid4().hex
        # The service reports the instance's own request id (else it makes one): the label
        # posted later joins the observation by it.
        body = json.dumps({"instances": [{**row, "request_id": request_id}]}).encode()
        request = urllib.request.Request(  # noqa: S310 - the demo's own loopback service
            self.service_url.rstrip("/") + "/predict",
            data=body,
            headers={"Content-Type": "application/json", "X-Request-Id": request_id},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                response.read()
        except (urllib.error.URLError, OSError):
            self.failed += 1
            return False
        self.sent += 1
        self.pending.append(
            {
                "request_id": request_id,
                "label": label,
                "labelled_at": datetime.now(UTC).isoformat(),
            }
        )
        return True

    def flush_labels(self) -> None:
        if not self.pending or not self.ingest_token or not self.labels_url:
            self.pending.clear()
            return
        batch, self.pending = self.pending, []
        request = urllib.request.Request(  # noqa: S310 - the control plane itself
            self.labels_url,
            data=json.dumps({"rows": batch}).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.ingest_token}",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            log.info(
                "labels not delivered (%s); the outcomes of %d requests are lost", exc, len(batch)
            )


def ticks(rate: float) -> Iterator[None]:
    """One tick every 1/rate seconds, without drifting behind."""
    period = 1.0 / rate
    due = time.monotonic()
    while True:
        due += period
        yield
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            due = time.monotonic()
