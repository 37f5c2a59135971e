"""A real Git repository for tests: the example ML project committed and pushed to a bare
repository reached by a file:// URL, as a Git server would hold it."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "churn-model"
IGNORE = shutil.ignore_patterns(
    ".venv", "artifacts", "reports", ".cache", "__pycache__", ".pytest_cache", "features.csv"
)


def _git(*args: str, cwd: Path) -> str:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Ada Author",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada Author",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


class Repo:
    def __init__(self, base: Path, source: Path = EXAMPLE, branch: str = "main") -> None:
        self.work = base / "work"
        self.bare = base / "origin.git"
        self.branch = branch
        shutil.copytree(source, self.work, ignore=IGNORE)
        _git("init", "-q", "-b", branch, cwd=self.work)
        _git("add", "-A", cwd=self.work)
        _git("commit", "-q", "-m", "Initial commit of the churn model", cwd=self.work)
        _git("init", "-q", "--bare", str(self.bare), cwd=base)
        _git("remote", "add", "origin", str(self.bare), cwd=self.work)
        _git("push", "-q", "origin", branch, cwd=self.work)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    @property
    def head(self) -> str:
        return _git("rev-parse", "HEAD", cwd=self.work)

    def commit(self, message: str, changes: dict[str, str | None]) -> str:
        """Write (or delete, with None) files, commit, push; return the new sha."""
        for name, text in changes.items():
            path = self.work / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        _git("add", "-A", cwd=self.work)
        _git("commit", "-q", "-m", message, cwd=self.work)
        _git("push", "-q", "origin", self.branch, cwd=self.work)
        return self.head

    def read(self, name: str) -> str:
        return (self.work / name).read_text()
