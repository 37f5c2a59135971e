"""What every provider does: name its event, hook and delivery id, check a signature over the
raw body (primitives in :mod:`apps.webhooks.verify`), and read a push out of its payload. No
database access here."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from apps.pipelines.commits import Commit

from ..choices import RefType
from ..verify import Credentials

ZERO_SHA = re.compile(r"^0+$")
SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
#: Longest header value kept in the ledger.
HEADER_VALUE_MAX = 300
#: GitHub and Gitea may send the JSON form-encoded, as ``payload=<JSON>``.
FORM = "application/x-www-form-urlencoded"


class PayloadError(ValueError):
    """An authenticated payload that does not say what a push must say (HTTP 400)."""


@dataclass(frozen=True)
class Push:
    """A push as the pipelines need it, whatever the provider."""

    ref: str  # as sent: refs/heads/main, refs/tags/v1, …
    ref_type: str | None  # RefType, or None for refs we do not build (refs/pull/…, notes)
    #: The pushed commit; its ``ref`` is the branch or tag name (no refs/heads/ or refs/tags/).
    commit: Commit
    deleted: bool = False
    repository: str = ""

    @property
    def name(self) -> str:
        return self.commit.ref

    @property
    def sha(self) -> str:
        return self.commit.sha


def form_payload(body: bytes) -> bytes | None:
    """The ``payload`` field of a form-encoded body, as the bytes it was before encoding (None
    when there is none or the body is not a form)."""
    try:
        values = parse_qs(
            body.decode("utf-8"), max_num_fields=10, encoding="utf-8", errors="strict"
        ).get("payload")
    except (UnicodeDecodeError, ValueError):
        return None
    return values[0].encode() if values else None


def split_ref(ref: str, *, bare_is_branch: bool = False) -> tuple[str | None, str]:
    """``refs/heads/main`` → (branch, main); ``refs/tags/v1`` → (tag, v1); others → (None, ref)."""
    if ref.startswith("refs/heads/"):
        return RefType.BRANCH, ref[len("refs/heads/") :]
    if ref.startswith("refs/tags/"):
        return RefType.TAG, ref[len("refs/tags/") :]
    if bare_is_branch and ref and not ref.startswith("refs/"):
        return RefType.BRANCH, ref
    return None, ref


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def make_push(
    *,
    ref: Any,
    sha: Any,
    deleted: bool = False,
    bare_is_branch: bool = False,
    message: Any = "",
    author: Any = "",
    author_email: Any = "",
    url: Any = "",
    repository: Any = "",
) -> Push:
    """A :class:`Push` from a payload's values, checked (ref, SHA) and cleaned (an author email
    that is not one, a link that is not http(s), are left empty)."""
    if not isinstance(ref, str) or not ref:
        raise PayloadError("The payload names no ref.")
    if not isinstance(sha, str) or not sha:
        raise PayloadError("The payload names no commit.")
    if not SHA.match(sha):
        raise PayloadError("The commit is not a hexadecimal SHA.")
    ref_type, name = split_ref(ref, bare_is_branch=bare_is_branch)
    if len(name) > 255:
        raise PayloadError("The ref name is longer than 255 characters.")
    commit = Commit(
        sha=sha.lower(),
        ref=name,
        message=text(message),
        author=text(author)[:200],
        author_email=_email_or_blank(text(author_email)),
        url=_url_or_blank(text(url)),
    )
    return Push(
        ref=ref,
        ref_type=ref_type,
        commit=commit,
        deleted=deleted or bool(ZERO_SHA.match(sha)),
        repository=text(repository),
    )


def _email_or_blank(value: str) -> str:
    try:
        validate_email(value)
    except ValidationError:
        return ""
    return value


def _url_or_blank(value: str) -> str:
    return value if value.startswith(("https://", "http://")) and len(value) <= 500 else ""


class BaseProvider:
    name: ClassVar[str]
    #: Header names, first present wins.
    event_headers: ClassVar[tuple[str, ...]] = ()
    delivery_headers: ClassVar[tuple[str, ...]] = ()
    #: The header naming the hook (one Git server event may reach several hooks of a project).
    hook_header: ClassVar[str] = ""
    #: The project credentials this provider checks (names in ``verify.CREDENTIAL_FIELDS``).
    credentials: ClassVar[tuple[str, ...]] = ("secret",)
    #: Headers kept in the ledger besides the event and delivery headers (never secrets).
    extra_stored_headers: ClassVar[tuple[str, ...]] = ()
    common_stored_headers: ClassVar[tuple[str, ...]] = ("User-Agent", "Content-Type")
    ping_events: ClassVar[frozenset[str]] = frozenset({"ping"})
    push_events: ClassVar[frozenset[str]] = frozenset({"push"})
    default_event: ClassVar[str] = ""

    # --- headers --------------------------------------------------------------------------

    def _first(self, headers: Mapping[str, str], names: tuple[str, ...]) -> str:
        for name in names:
            value = headers.get(name)
            if value:
                return value
        return ""

    def event(self, headers: Mapping[str, str]) -> str:
        return self._first(headers, self.event_headers)[:100] or self.default_event

    def delivery_id(self, headers: Mapping[str, str]) -> str:
        return self._first(headers, self.delivery_headers)[:200]

    def hook_id(self, headers: Mapping[str, str]) -> str:
        return headers.get(self.hook_header, "")[:64] if self.hook_header else ""

    def stored_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        names = (
            *self.common_stored_headers,
            *self.event_headers,
            *self.delivery_headers,
            *((self.hook_header,) if self.hook_header else ()),
            *self.extra_stored_headers,
        )
        kept = {}
        for name in dict.fromkeys(names):
            value = headers.get(name)
            if value:
                kept[name] = value[:HEADER_VALUE_MAX]
        return kept

    # --- signature ------------------------------------------------------------------------

    def signed_bytes(self, *, body: bytes, content_type: str) -> bytes:
        """The bytes the sender signed: the raw body (Gitea's form mode differs)."""
        return body

    def verify(self, *, headers: Mapping[str, str], body: bytes, credentials: Credentials) -> bool:
        """Whether the request was signed with the project's ``credentials``. Must do the same
        work whatever the outcome, also when a credential is empty (an unknown project)."""
        raise NotImplementedError

    def sign(self, *, secret: str, body: bytes, event: str, delivery_id: str) -> dict[str, str]:
        """The headers this provider would send (tests and benchmarks)."""
        raise NotImplementedError

    # --- payload --------------------------------------------------------------------------

    def kind(self, *, event: str, payload: Mapping[str, Any]) -> str | None:
        """``"ping"``, ``"push"``, or None for an event we do not act on."""
        if event in self.ping_events:
            return "ping"
        if event in self.push_events:
            return "push"
        return None

    def parse_push(self, payload: Mapping[str, Any]) -> Push:
        raise NotImplementedError
