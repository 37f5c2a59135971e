"""The demo as a newcomer meets it: ``setup_demo`` against the test database with its Git
repository in a temp dir, then ``git clone``, commit and ``git push`` with the real git."""

import io
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.projects.models import Project

#: "  Log in as:     admin / s3cr3t   (superuser: everything)", then one such row per user.
LOGIN = re.compile(r"^\s+(?:Log in as:)?\s+(\w+) / (\S+)\s+\((\w+):", re.MULTILINE)


@dataclass
class Demo:
    project: Project
    output: str
    repository: Path  # the bare repository under var/git/
    logins: dict[str, str]  # user → password, as printed

    def clone(self, where: Path) -> Path:
        git("clone", "-q", str(self.repository), str(where), cwd=where.parent)
        return where


def git_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "New Comer",
        "GIT_AUTHOR_EMAIL": "newcomer@example.com",
        "GIT_COMMITTER_NAME": "New Comer",
        "GIT_COMMITTER_EMAIL": "newcomer@example.com",
    }


def git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        ["git", *args],  # noqa: S607
        cwd=cwd,
        env=git_env(cwd),
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def change_and_push(work: Path, message: str = "Say hello in the README") -> tuple[str, str]:
    """Edit README.md, commit, ``git push``; returns (new commit, what the push printed)."""
    readme = work / "README.md"
    readme.write_text(readme.read_text() + "\nHello from a newcomer.\n")
    git("commit", "-q", "-am", message, cwd=work)
    pushed = git("push", "origin", "main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).stdout.strip(), pushed.stderr


@pytest.fixture
def setup_demo(settings, tmp_path):
    """setup_demo() → Demo: the command run as ``make demo`` runs it, output captured."""

    def run() -> Demo:
        settings.VAR_DIR = tmp_path / "var"
        out = io.StringIO()
        call_command("setup_demo", stdout=out)
        output = out.getvalue()
        return Demo(
            project=Project.objects.get(slug="demo-churn-model"),
            output=output,
            repository=settings.VAR_DIR / "git" / "churn-model.git",
            logins={user: password for user, password, _ in LOGIN.findall(output)},
        )

    return run
