"""One class per kind of Git server; :func:`get_provider` picks it by the URL's name."""

from .base import BaseProvider, PayloadError, Push
from .generic import Generic
from .gitea import Gitea
from .github import GitHub
from .gitlab import GitLab

PROVIDERS: dict[str, BaseProvider] = {p.name: p for p in (GitHub(), GitLab(), Gitea(), Generic())}


def get_provider(name: str) -> BaseProvider:
    return PROVIDERS[name]


__all__ = ["PROVIDERS", "BaseProvider", "PayloadError", "Push", "get_provider"]
