"""Create the demo admin (password printed, kept in var/) and a demo project with history."""

import os
import secrets
import shutil
import subprocess

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts.choices import Role
from apps.pipelines import services as pipeline_services
from apps.pipelines.choices import Trigger
from apps.pipelines.commits import Commit
from apps.projects import services
from apps.projects.models import Project

DEMO_SLUG = "demo-churn-model"
EXAMPLE = settings.BASE_DIR / "examples" / "churn-model"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Demo Developer",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Demo Developer",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


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

    def _push_example(self) -> tuple[str, str]:
        root = settings.VAR_DIR / "git"
        work, bare = root / "churn-model", root / "churn-model.git"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(
            EXAMPLE,
            work,
            ignore=shutil.ignore_patterns(
                ".venv", "artifacts", "reports", ".cache", "__pycache__", ".pytest_cache"
            ),
        )
        env = {**os.environ, **GIT_ENV}

        def git(*args, cwd=work):
            return subprocess.run(  # noqa: S603 - fixed arguments
                ["git", *args],  # noqa: S607
                cwd=cwd,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()

        git("init", "-q", "--bare", str(bare), cwd=root)
        git("init", "-q", "-b", "main")
        git("add", "-A")
        git("commit", "-q", "-m", "Churn model: data prep, training, predict, serve")
        git("remote", "add", "origin", str(bare))
        git("push", "-q", "origin", "main")
        self.stdout.write(f"Pushed examples/churn-model to {bare} (a local Git server).")
        return f"file://{bare}", git("rev-parse", "HEAD")

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
        # The example ML project as a Git repository the demo pushes to: the push starts the
        # first pipeline run (tests, build: model + bundle, reproducibility), executed once the
        # worker is up; its release then deploys to dev and staging (process deployer, ports
        # 8101/8102) and waits for an approval to production (8103). Nothing is made up.
        url, sha = self._push_example()
        project.repository_url = url
        project.save(update_fields=["repository_url"])
        pipeline_services.run_request(
            project=project, actor=admin, trigger=Trigger.PUSH, commit=Commit(sha=sha, ref="main")
        )
