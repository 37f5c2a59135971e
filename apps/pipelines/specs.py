"""The pipeline spec at a commit: the one read that run preparation and the run-starting
services (:mod:`apps.pipelines.triggers`) share."""

import subprocess

from apps.core.exceptions import ServiceError
from apps.projects.models import Project
from apps.projects.spec import SPEC_FILENAME, PipelineSpec, SpecError, parse_spec

from . import git


class SpecUnavailable(ServiceError):
    """The commit or its `.controlplane.yml` cannot be had or is invalid (the message says)."""


def spec_at(
    project: Project, *, sha: str = "", ref: str = ""
) -> tuple[dict[str, str], PipelineSpec]:
    """The commit (``sha``, or the head of ``ref``, or of the default branch) and its parsed
    spec, in one ``git cat-file`` when the mirror has the commit. Raises SpecUnavailable."""
    try:
        if not sha:
            git.mirror_update(project)
        sha = sha or git.resolve(project, ref or project.default_branch)
        info, text = git.commit_and_file(project, sha, SPEC_FILENAME)  # one git process
    except (git.GitError, subprocess.TimeoutExpired) as exc:
        raise SpecUnavailable(f"Could not get the commit: {exc}") from None
    if text is None:
        raise SpecUnavailable(f"No {SPEC_FILENAME} in commit {sha[:12]}.")
    try:
        spec = parse_spec(text)
    except SpecError as exc:
        details = "\n".join(str(issue) for issue in exc.issues)
        raise SpecUnavailable(f"Invalid {SPEC_FILENAME}:\n{details}") from None
    return info, spec
