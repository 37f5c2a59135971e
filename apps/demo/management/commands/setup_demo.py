"""``manage.py setup_demo``: load the demo (see apps/demo/loader.py) and say how to use it."""

from django.conf import settings
from django.core.management.base import BaseCommand
from django.urls import reverse

from apps.demo.loader import load_demo


class Command(BaseCommand):
    help = "Create the demo users and the demo project with its Git repository (idempotent)."

    def handle(self, *args, **options):
        demo = load_demo()
        if demo.created:
            self.stdout.write(f"Loaded the demo project '{demo.project.slug}'.")
        width = max(len(f"{u} / {p}") for u, p, _ in demo.logins)
        logins = [
            f"{'Log in as:' if i == 0 else '':<15}{f'{u} / {p}':<{width}}  ({what})"
            for i, (u, p, what) in enumerate(demo.logins)
        ]
        site = settings.SITE_URL
        line = "=" * 72
        self.stdout.write(
            "\n".join(
                [
                    "",
                    line,
                    f"  Control plane: {site}/",
                    *(f"  {row}" for row in logins),
                    f"  (passwords kept in {settings.VAR_DIR}/demo-<user>-password.txt)",
                    "",
                    "  Push to start a pipeline (the repository's hook tells the control plane):",
                    f"    git clone {demo.repository} churn-model && cd churn-model",
                    "    # change something, e.g. README.md, then",
                    '    git commit -am "My change" && git push',
                    f"  and watch it in the build history: {site}{reverse('history')}",
                    line,
                    "",
                ]
            )
        )
