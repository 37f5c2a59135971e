"""``manage.py demo_drift [SHIFT|off]``: make the demo's traffic drift (its first four features
move by SHIFT standard deviations, default 1.0), or stop it."""

from django.core.management.base import BaseCommand, CommandError

from apps.demo.traffic import drift_set, drift_shift


class Command(BaseCommand):
    help = "Inject drift into the demo traffic (or 'off')."

    def add_arguments(self, parser):
        parser.add_argument("shift", nargs="?", default="1.0")

    def handle(self, *args, shift, **options):
        if shift == "off":
            drift_set(None)
            self.stdout.write("demo traffic: no drift")
            return
        try:
            value = float(shift)
        except ValueError:
            raise CommandError(f"SHIFT must be a number or 'off', not {shift!r}") from None
        drift_set(value)
        self.stdout.write(f"demo traffic: features f0–f3 shifted by {drift_shift()} std")
