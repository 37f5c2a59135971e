"""Which repository URLs a project may have (docs/repositories.md).

A worker clones the project's URL with its own file-system rights, so the URL decides what a
project member can read through a pipeline. Remote schemes are limited to those Git speaks
over the network with no helper program (https, ssh and its ``user@host:path`` form, git);
``http`` sends credentials in clear and ``ext::``/``fd::`` run programs, so both are refused.
A local path (``file://`` or a bare path) is refused unless the install allows it
(``CONTROLPLANE_ALLOW_LOCAL_REPOSITORIES``: the demo and the test suite do), and even then
never inside the control plane's own data: the mirrors of other projects, job workspaces,
logs, artifacts, ``var/``. The check runs when the URL is set (a 400 naming the rule) and again
before every clone or fetch (settings and symlinks may have changed since).
"""

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

REMOTE_SCHEMES = ("https", "ssh", "git")
# ``git@github.com:owner/name.git``: Git's scp-like ssh syntax (no scheme, a colon before
# any slash, a host made of host characters).
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~-]+@)?[A-Za-z0-9.-]+:(?!//)[^\s]+$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+$")


def _data_dirs() -> list[Path]:
    """Folders of the control plane's own data a repository URL may never point into."""
    names = (
        "VAR_DIR",
        "WORKSPACE_DIR",
        "JOB_LOG_DIR",
        "ARTIFACT_DIR",
        "DATASET_DIR",
        "OBSERVATION_DIR",
        "CONTROLPLANE_DEPLOY_DIR",
        "BROKER_DIR",
        "STATIC_ROOT",
    )
    dirs = [Path(getattr(settings, name)) for name in names if getattr(settings, name, None)]
    return [d.resolve() for d in dirs]


def _local_repository_dirs() -> list[Path]:
    """Folders under ``var/`` that hold repositories this install made itself (the demo's
    ``var/git``): allowed with local repositories, unlike the rest of ``var/``."""
    return [(Path(settings.VAR_DIR) / "git").resolve()]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_local(raw_path: str) -> None:
    if not getattr(settings, "CONTROLPLANE_ALLOW_LOCAL_REPOSITORIES", False):
        raise ValidationError(
            "Local repositories (file:// or a path) are not allowed on this install: use an "
            "https://, ssh:// or git:// URL (an administrator may allow them with "
            "CONTROLPLANE_ALLOW_LOCAL_REPOSITORIES).",
            code="local_repository",
        )
    if not raw_path.startswith("/"):
        raise ValidationError("A local repository needs an absolute path.", code="relative")
    # resolve(): a symlink, or "..", cannot smuggle a data folder past the check.
    path = Path(raw_path).resolve()
    if any(_inside(path, d) for d in _local_repository_dirs()):
        return
    for folder in _data_dirs():
        if _inside(path, folder):
            raise ValidationError(
                "The repository cannot be inside the control plane's own data "
                f"(its {folder.name}/ folder: project mirrors, workspaces, logs, artifacts).",
                code="control_plane_data",
            )


def repository_url_check(url: str) -> None:
    """Raise ``ValidationError`` when ``url`` is not a repository URL a project may have."""
    url = (url or "").strip()
    if not url:
        return
    if url.startswith("-"):
        raise ValidationError("A repository URL cannot start with '-'.", code="invalid")
    if "::" in url.split("/", 1)[0]:  # ext::sh -c …, fd::3: transports that run programs
        raise ValidationError(
            "Git remote helpers (<transport>::<address>) are not allowed.", code="scheme"
        )
    if url.startswith("/"):
        _check_local(url)
        return
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if "://" not in url:
        if _SCP_LIKE.match(url):
            return  # ssh in scp form
        raise ValidationError(
            "Give the repository as an https://, ssh:// or git:// URL, git@host:path, or an "
            "absolute path.",
            code="invalid",
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValidationError("A file:// URL cannot name a host.", code="invalid")
        _check_local(unquote(parts.path))
        return
    if scheme not in REMOTE_SCHEMES:
        raise ValidationError(
            f"The scheme '{scheme}' is not allowed: use https, ssh or git.", code="scheme"
        )
    if not parts.hostname or not _HOST.match(parts.hostname):
        raise ValidationError("The repository URL needs a host name.", code="invalid")


def validate_repository_url(value: str) -> None:
    """Model field validator (the form, the API and ``full_clean`` run it)."""
    repository_url_check(value)
