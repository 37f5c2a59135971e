"""What the closed-loop test and ``bench/drift_alert.py`` share: the example's training data
as a dataset version, and traffic to a deployed service that reports its predictions itself
(the example's telemetry) while this side plays the world that later learns each outcome and
posts it as a label (``…/labels/`` with the environment's ingest token)."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from apps.demo.traffic import Population, Sender, ticks
from apps.monitoring.services.ingest import TOKEN_VARIABLE
from apps.projects.models import Environment, Variable
from apps.releases.deployers.health import free_port
from tests.monitoring.checks_setup import dataset_from_file

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn-model"


def features_version(project, folder: Path):
    """``features`` v1: the example's ``prepare.py`` run on its raw data, as its ``features``
    pipeline makes it (recorded without starting anything)."""
    out = folder / "features.csv"
    subprocess.run(  # noqa: S603 - the example's own script
        [sys.executable, "prepare.py", "--in", "data/raw.csv", "--out", str(out)],
        cwd=EXAMPLE,
        check=True,
        capture_output=True,
    )
    return dataset_from_file(project, out)


def serve_on_free_ports(project) -> None:
    """Every environment deploys with the process deployer on a free port (fixed ports may be
    taken on a shared machine)."""
    for env in project.environments.all():
        env.deployer, env.service_port, env.health_check_timeout = "process", free_port(), 60
        env.service_url = f"http://127.0.0.1:{env.service_port}/"
        env.save()


@dataclass
class Traffic:
    """Rows drawn from ``population`` (with ``shift`` standard deviations added to four of the
    six features once set) posted one at a time to the environment's service at ``rate`` per
    second from a thread, their labels posted every ``label_every`` requests."""

    environment: Environment
    population: Population
    rate: float = 30.0
    label_every: int = 20
    shift: float = 0.0
    seed: int = 7
    sender: Sender | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Traffic:
        token = Variable.objects.get(
            project=self.environment.project, environment=self.environment, key=TOKEN_VARIABLE
        ).value
        self.sender = Sender(
            service_url=self.environment.service_url,
            labels_url=(f"{settings.SITE_URL}/api/v1/environments/{self.environment.pk}/labels/"),
            ingest_token=token,
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        rng = random.Random(self.seed)  # noqa: S311 - made-up traffic
        for _ in ticks(self.rate):
            if self._stop.is_set():
                break
            row, label = self.population.draw(rng, self.shift)
            self.sender.predict(row, label)
            if len(self.sender.pending) >= self.label_every:
                self.sender.flush_labels()
        self.sender.flush_labels()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
