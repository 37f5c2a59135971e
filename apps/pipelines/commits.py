"""The commit a run is of: one small value passed to :func:`apps.pipelines.services.run_request`
instead of six loose keywords."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Commit:
    """What a run records of its commit. ``sha`` may be empty (the head of ``ref`` is resolved
    when the run is prepared); ``ref`` is a branch or tag name, without ``refs/heads/``."""

    sha: str = ""
    ref: str = ""
    message: str = ""
    author: str = ""
    author_email: str = ""
    url: str = ""

    @classmethod
    def of_run(cls, run: Any) -> "Commit":
        """The commit an existing run was of (a re-run starts from it)."""
        return cls(
            sha=run.commit_sha,
            ref=run.ref,
            message=run.commit_message,
            author=run.commit_author,
            author_email=run.commit_author_email,
            url=run.commit_url,
        )

    def run_fields(self) -> dict[str, str]:
        """The ``PipelineRun`` columns this commit fills."""
        return {
            "commit_sha": self.sha,
            "ref": self.ref,
            "commit_message": self.message,
            "commit_author": self.author,
            "commit_author_email": self.author_email,
            "commit_url": self.url,
        }
