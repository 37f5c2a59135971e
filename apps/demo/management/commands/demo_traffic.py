"""``manage.py demo_traffic``: send the demo's production service generated requests, and the
control plane their outcomes, until stopped (see apps/demo/traffic.py)."""

import random
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.demo.loader import DEMO_SLUG
from apps.demo.traffic import Population, Sender, drift_shift, ticks
from apps.projects.models import Environment, Variable
from apps.releases.choices import DeploymentStatus

INGEST_TOKEN_KEY = "CONTROLPLANE_INGEST_TOKEN"  # noqa: S105 - a variable's name


def _serving(project_slug: str, prefer: str) -> Environment | None:
    """``prefer`` when a release serves there, else the latest environment that serves."""
    envs = (
        Environment.objects.filter(project__slug=project_slug, service_url__gt="")
        .filter(deployments__status=DeploymentStatus.SUCCEEDED)
        .distinct()
        .order_by("-order")
    )
    envs = list(envs)
    return next((e for e in envs if e.name == prefer), envs[0] if envs else None)


def _token(environment: Environment) -> str:
    variable = Variable.objects.filter(
        project=environment.project, environment=environment, key=INGEST_TOKEN_KEY
    ).first()
    return variable.value if variable else ""


class Command(BaseCommand):
    help = "Send the demo's serving model generated traffic and its outcomes (Ctrl-C stops)."

    def add_arguments(self, parser):
        parser.add_argument("--rate", type=float, default=5.0, help="Requests per second.")
        parser.add_argument("--environment", default="production")
        parser.add_argument("--project", default=DEMO_SLUG)
        parser.add_argument("--seconds", type=float, default=0, help="Stop after (0: never).")
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args, **options):
        rng = random.Random(options["seed"])  # noqa: S311 - made-up traffic, not a secret
        population = Population.load()
        prefer, started = options["environment"], time.monotonic()
        target, sender, said_waiting, last_check = None, None, False, 0.0
        for _ in ticks(options["rate"]):
            if options["seconds"] and time.monotonic() - started > options["seconds"]:
                break
            if target is None or time.monotonic() - last_check > 30:
                last_check = time.monotonic()
                found = _serving(options["project"], prefer)
                if found is None:
                    if not said_waiting:
                        self.stdout.write("demo traffic: waiting for a release to serve…")
                        said_waiting = True
                    time.sleep(5)
                    continue
                if target is None or found.pk != target.pk:
                    if found.name != prefer:
                        self.stdout.write(
                            f"demo traffic: {prefer} serves nothing yet (approve its first "
                            f"release in the inbox); sending to {found.name} meanwhile"
                        )
                    else:
                        self.stdout.write(f"demo traffic: sending to {found.name}")
                    target = found
                    sender = Sender(
                        service_url=found.service_url,
                        labels_url=f"{settings.SITE_URL}/api/v1/environments/{found.pk}/labels/",
                        ingest_token=_token(found),
                    )
            row, label = population.draw(rng, drift_shift())
            sender.predict(row, label)
            if len(sender.pending) >= 50:
                if not sender.ingest_token:
                    sender.ingest_token = _token(target)
                sender.flush_labels()
        if sender is not None:
            sender.flush_labels()
            self.stdout.write(f"demo traffic: {sender.sent} sent, {sender.failed} failed")
