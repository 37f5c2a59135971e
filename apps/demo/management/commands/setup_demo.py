"""``manage.py setup_demo``: load the demo (see apps/demo/loader.py) and say how to use it."""

from django.conf import settings
from django.core.management.base import BaseCommand
from django.urls import reverse

from apps.demo.loader import DEMO_COMMIT, load_demo


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
        slug = demo.project.slug
        # Literal paths: the pipelines and registry pages (apps pipelines, training).
        pipelines, models = f"{site}/p/{slug}/pipelines/", f"{site}/p/{slug}/models/"
        inbox = f"{site}{reverse('approvals')}"
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
                    "",
                    "  Continuous training (examples/churn-model/README.md, section Demo):",
                    "    The demo's repository has one demo-only commit on top of the example:",
                    f'    "{DEMO_COMMIT}".',
                    "    So, once the first run was prepared, every 2 minutes:",
                    "    - the schedule refresh-features runs pipeline features (a scheduled",
                    "      run); its first run records dataset features v1, later ones reuse",
                    "      step prepare from the cache (same code, same raw data) and record",
                    "      no new version;",
                    "    - features v1 starts pipeline train; nothing serves in production",
                    '      yet, so its gate passes as "first model": a release that deploys',
                    "      to dev and staging and waits for approval to production.",
                    f"    Watch it on the pipelines page: {pipelines}",
                    f"    the models and their gate verdicts in the registry: {models}",
                    "    Then, in this order:",
                    f"    1. as lead, approve the first model's release in the inbox: {inbox}",
                    "       (it replaces the first run's request for production);",
                    "    2. once production serves it, as dev press Run on pipeline train",
                    "       with model_type dummy: its gate fails (f1 0 against the",
                    "       champion's ~0.89) and the run page shows both scores.",
                    line,
                    "",
                ]
            )
        )
