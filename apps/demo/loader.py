"""The demo: an admin and three users (one per role, passwords printed and kept in var/), the
example ML project as a Git repository under ``var/git/`` whose ``post-receive`` hook sends a
signed push webhook to the control plane, and the project's first pipeline run.

The repository holds two commits: the example as it is, then a demo-only change that makes the
``refresh-features`` schedule fire every 2 minutes instead of every 6 hours, so a newcomer sees
the continuous-training loop (a scheduled features run, its cached step, the train run it
starts and that run's gate) within minutes. It is a commit, not a setting: ``git log`` in a
clone shows it and ``git revert`` undoes it.

Idempotent: a second call keeps the users' passwords and the project, and rewrites the hook's
settings (so a changed ``CONTROLPLANE_SITE_URL`` reaches the hook).
"""

import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse

from apps.accounts.choices import Role
from apps.pipelines import services as pipeline_services
from apps.pipelines.choices import Trigger
from apps.pipelines.commits import Commit
from apps.projects import services
from apps.projects.models import Project

DEMO_SLUG = "demo-churn-model"
EXAMPLE = settings.BASE_DIR / "examples" / "churn-model"
HOOK = Path(__file__).with_name("post_receive.py")
#: The demo-only commit: the features schedule's interval in the example, and the demo's.
FEATURES_EVERY = ("    every: 6h\n", "    every: 2m\n")
#: ... and the drift check's interval and the retrain cooldown, so drift shows in minutes.
MONITOR_EVERY = ("  every: 15m\n", "  every: 1m\n")
RETRAIN_COOLDOWN = ("cooldown: 6h,", "cooldown: 10m,")
DEMO_COMMIT = (
    "Demo: refresh the features every 2 minutes and check drift every minute "
    "(the example says 6h and 15m)"
)
#: The demo's users besides the admin: name, role, what the role may do.
USERS = (
    ("lead", Role.APPROVER, "approver: approves production deploys"),
    ("dev", Role.DEVELOPER, "developer: starts, retries and cancels runs"),
    ("viewer", Role.VIEWER, "viewer: reads everything, changes nothing"),
)
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Demo Developer",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Demo Developer",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class Demo:
    project: Project
    repository: Path  # the bare repository to clone and push to
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (user, password, role)
    created: bool = False


def demo_repository() -> Path:
    return settings.VAR_DIR / "git" / "churn-model.git"


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(  # noqa: S603 - fixed arguments
        ["git", *args],  # noqa: S607
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _login(username: str, *, superuser: bool = False):
    """The user and its password, kept in ``var/demo-<user>-password.txt`` (mode 0600)."""
    user_model = get_user_model()
    cred_file = settings.VAR_DIR / f"demo-{username}-password.txt"
    user = user_model.objects.filter(username=username).first()
    if user is not None and cred_file.exists():
        return user, cred_file.read_text().strip()
    password = secrets.token_urlsafe(12)
    if user is None:
        create = (
            user_model.objects.create_superuser if superuser else user_model.objects.create_user
        )
        user = create(username, f"{username}@example.com", password)
    else:
        user.set_password(password)
        user.save()
    cred_file.parent.mkdir(parents=True, exist_ok=True)
    cred_file.write_text(password + "\n")
    cred_file.chmod(0o600)
    return user, password


def _demo_schedule(work: Path) -> None:
    """The demo-only change: ``refresh-features`` every 2 minutes instead of 6 hours, the drift
    check every minute instead of 15, a retrain cooldown of 10 minutes instead of 6 hours."""
    spec = work / ".controlplane.yml"
    text = spec.read_text()
    for example, demo in (FEATURES_EVERY, MONITOR_EVERY, RETRAIN_COOLDOWN):
        if text.count(example) != 1:  # the example changed: say so, not demo the wrong thing
            raise RuntimeError(f"examples/churn-model/.controlplane.yml has no single {example!r}")
        text = text.replace(example, demo)
    spec.write_text(text)


def _push_example(bare: Path) -> str:
    """examples/churn-model as the first commit of ``main`` in a fresh bare repository (a
    local Git server), then the demo's short schedule as a second one; returns the head. HEAD
    names ``main``, so a clone checks it out."""
    shutil.rmtree(bare.parent, ignore_errors=True)
    bare.parent.mkdir(parents=True)
    _git("init", "-q", "--bare", "--initial-branch=main", str(bare), cwd=bare.parent)
    with tempfile.TemporaryDirectory(prefix="demo-seed-") as tmp:
        work = Path(tmp) / "churn-model"
        shutil.copytree(
            EXAMPLE,
            work,
            ignore=shutil.ignore_patterns(
                ".venv", "artifacts", "reports", ".cache", "__pycache__", ".pytest_cache"
            ),
        )
        _git("init", "-q", "--initial-branch=main", cwd=work)
        _git("add", "-A", cwd=work)
        _git("commit", "-q", "-m", "Churn model: data prep, training, predict, serve", cwd=work)
        _demo_schedule(work)
        _git("commit", "-q", "-am", DEMO_COMMIT, cwd=work)
        _git("push", "-q", str(bare), "main", cwd=work)
        return _git("rev-parse", "HEAD", cwd=work)


def install_hook(project: Project, bare: Path) -> None:
    """The ``post-receive`` hook and its settings (receiver URL, secret) in the bare repo."""
    hook = bare / "hooks" / "post-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(HOOK.read_text())
    hook.chmod(0o755)
    url = settings.SITE_URL + reverse(
        "hooks:receive", kwargs={"provider": "gitea", "slug": project.slug}
    )
    for key, value in (
        ("url", url),
        ("secret", project.webhook_secret),
        ("cloneurl", project.repository_url),
        ("timeout", "5"),
    ):
        _git("config", f"controlplane.{key}", value, cwd=bare)
    (bare / "config").chmod(0o600)  # it holds the webhook secret


@transaction.atomic
def _create_project(admin) -> Project:
    project = services.project_create(
        name="Demo churn model",
        slug=DEMO_SLUG,
        actor=admin,
        description="A small scikit-learn model that predicts churn; see examples/churn-model.",
        repository_url=f"file://{demo_repository()}",
        default_branch="main",
        webhook_secret=secrets.token_urlsafe(32),
    )
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
        # dev runs on look-alike data of the real schema (docs/datasets.md): an explicit
        # setting of the environment, set here for the demo's dev.
        env.synthetic_data = env.name == "dev"
        env.save(update_fields=["service_port", "service_url", "synthetic_data"])
    return project


def load_demo() -> Demo:
    admin, password = _login("admin", superuser=True)
    project = Project.objects.filter(slug=DEMO_SLUG).first()
    demo = Demo(project=project, repository=demo_repository(), created=project is None)
    demo.logins.append(("admin", password, "superuser: everything"))
    if project is None:
        project = demo.project = _create_project(admin)
    for name, role, what in USERS:
        user, password = _login(name)
        services.membership_set(project=project, user=user, role=role, actor=admin)
        demo.logins.append((name, password, what))
    if not project.webhook_secret:  # a demo made before pushes were delivered
        project.webhook_secret = secrets.token_urlsafe(32)
        project.save(update_fields=["webhook_secret"])
    if demo.created or not demo.repository.is_dir():
        # The first run: executed once the worker is up; its release then deploys to dev and
        # staging (process deployer, ports 8101/8102) and waits for an approval to
        # production (8103). Later pushes start runs through the hook.
        sha = _push_example(demo.repository)
        pipeline_services.run_request(
            project=project, actor=admin, trigger=Trigger.PUSH, commit=Commit(sha=sha, ref="main")
        )
    install_hook(project, demo.repository)
    return demo
