"""Create the demo admin (password printed, kept in var/) and a demo project with history."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from apps.accounts.choices import Role
from apps.pipelines import services as pipeline_services
from apps.pipelines.choices import Trigger
from apps.projects import services
from apps.projects.models import Project
from apps.releases import services as release_services
from apps.releases.choices import DeploymentStatus
from apps.releases.models import Deployment

DEMO_SLUG = "demo-churn-model"
DEMO_JOBS = [
    {
        "name": "lint",
        "kind": "test",
        "script": ["echo 'checking style…'", "sleep 1", "echo 'ruff: all checks passed'"],
    },
    {
        "name": "unit-tests",
        "kind": "test",
        "script": [
            "python3 -c \"import sys; print('python', sys.version.split()[0])\"",
            'for i in 1 2 3 4 5; do echo "test_$i ... ok"; sleep 0.3; done',
            'echo "5 passed; API key is $DEMO_API_KEY"',
        ],
    },
    {
        "name": "reproducibility",
        "kind": "reproducibility",
        "needs": ["unit-tests", "lint"],
        "script": ["echo 'max abs diff 0.0 (tolerance 1e-6): 0 rows outside'"],
    },
]


class Command(BaseCommand):
    help = "Create the demo admin user and demo project (idempotent)."

    def handle(self, *args, **options):
        admin, password = self._admin()
        if not Project.objects.filter(slug=DEMO_SLUG).exists():
            self._project(admin)
            self.stdout.write(f"Loaded the demo project '{DEMO_SLUG}'.")
        line = "=" * 64
        self.stdout.write(
            f"\n{line}\n  Control plane: http://127.0.0.1:8000/\n"
            f"  Log in as:     admin / {password}\n{line}\n"
        )

    def _admin(self):
        user_model = get_user_model()
        cred_file = settings.VAR_DIR / "demo-admin-password.txt"
        admin = user_model.objects.filter(username="admin").first()
        if admin is not None and cred_file.exists():
            return admin, cred_file.read_text().strip()
        password = secrets.token_urlsafe(12)
        if admin is None:
            admin = user_model.objects.create_superuser("admin", "admin@example.com", password)
        else:
            admin.set_password(password)
            admin.save()
        cred_file.parent.mkdir(parents=True, exist_ok=True)
        cred_file.write_text(password + "\n")
        cred_file.chmod(0o600)
        return admin, password

    @transaction.atomic
    def _project(self, admin):
        project = services.project_create(
            name="Demo churn model",
            slug=DEMO_SLUG,
            actor=admin,
            description="A small scikit-learn model that predicts churn; see examples/churn-model.",
            repository_url="",
            default_branch="main",
        )
        user_model = get_user_model()
        for name, role in (
            ("lead", Role.APPROVER),
            ("dev", Role.DEVELOPER),
            ("viewer", Role.VIEWER),
        ):
            user = user_model.objects.filter(username=name).first() or (
                user_model.objects.create_user(
                    name, f"{name}@example.com", secrets.token_urlsafe(16)
                )
            )
            services.membership_set(project=project, user=user, role=role, actor=admin)
        services.variable_set(project=project, key="MODEL_NAME", value="churn-logreg", actor=admin)
        services.variable_set(
            project=project,
            key="DEMO_API_KEY",
            value="s3cr3t-demo-key",
            is_secret=True,
            actor=admin,
        )
        envs = {e.name: e for e in project.environments.all()}
        for port, env in zip((8101, 8102, 8103), envs.values(), strict=False):
            env.service_port = port
            env.service_url = f"http://127.0.0.1:{port}/"
            env.save(update_fields=["service_port", "service_url"])
        # History: two releases, v1 in production, v2 in dev/staging waiting for approval.
        now = timezone.now()
        for version, sha, targets in (
            ("v1", "a1b2c3d4e5f6", ["dev", "staging", "production"]),
            ("v2", "0f9e8d7c6b5a", ["dev", "staging"]),
        ):
            release = release_services.release_create(
                project=project,
                version=version,
                commit_sha=sha,
                actor=admin,
                ref="main",
                evidence={
                    "tests": {"passed": 23, "failed": 0},
                    "reproducibility": {"max_abs_diff": 0.0, "rows_outside": 0},
                },
            )
            for name in targets:
                Deployment.objects.create(
                    release=release,
                    environment=envs[name],
                    status=DeploymentStatus.SUCCEEDED,
                    deployer=envs[name].deployer,
                    triggered_by=admin,
                    started_at=now - timedelta(minutes=5),
                    finished_at=now - timedelta(minutes=4),
                )
        release_services.promotion_request(
            release=release, environment=envs["production"], actor=admin
        )
        # A first pipeline run, executed by the worker once it starts.
        pipeline_services.run_create(
            project=project, jobs=DEMO_JOBS, actor=admin, trigger=Trigger.MANUAL, ref="main"
        )
