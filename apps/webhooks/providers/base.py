"""What every provider does: name its event and delivery id, check a signature over the raw body,
and read a push out of its payload. No database access here."""

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..choices import RefType

ZERO_SHA = re.compile(r"^0+$")
SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
#: Longest header value kept in the ledger.
HEADER_VALUE_MAX = 300


class PayloadError(ValueError):
    """An authenticated payload that does not say what a push must say (HTTP 400)."""


@dataclass(frozen=True)
class Push:
    """A push as the pipelines need it, whatever the provider."""

    ref: str
    ref_type: str | None  # RefType, or None for refs we do not build (refs/pull/…, notes)
    name: str  # branch or tag name, without refs/heads/ or refs/tags/
    sha: str
    deleted: bool = False
    message: str = ""
    author: str = ""
    author_email: str = ""
    url: str = ""
    repository: str = ""


def hmac_sha256_hex(secret: str | bytes, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def header_bytes(value: str) -> bytes:
    """The bytes a header value arrived as (WSGI hands them over decoded as latin-1)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def constant_time_equals(given: str, expected: str) -> bool:
    return hmac.compare_digest(header_bytes(given), expected.encode())


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
    **fields: Any,
) -> Push:
    if not isinstance(ref, str) or not ref:
        raise PayloadError("The payload names no ref.")
    if not isinstance(sha, str) or not sha:
        raise PayloadError("The payload names no commit.")
    if not SHA.match(sha):
        raise PayloadError("The commit is not a hexadecimal SHA.")
    ref_type, name = split_ref(ref, bare_is_branch=bare_is_branch)
    if len(name) > 255:
        raise PayloadError("The ref name is longer than 255 characters.")
    return Push(
        ref=ref,
        ref_type=ref_type,
        name=name,
        sha=sha.lower(),
        deleted=deleted or bool(ZERO_SHA.match(sha)),
        **{k: text(v) for k, v in fields.items()},
    )


class BaseProvider:
    name: ClassVar[str]
    #: Header names, first present wins.
    event_headers: ClassVar[tuple[str, ...]] = ()
    delivery_headers: ClassVar[tuple[str, ...]] = ()
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

    def stored_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        names = (
            *self.common_stored_headers,
            *self.event_headers,
            *self.delivery_headers,
            *self.extra_stored_headers,
        )
        kept = {}
        for name in dict.fromkeys(names):
            value = headers.get(name)
            if value:
                kept[name] = value[:HEADER_VALUE_MAX]
        return kept

    # --- signature ------------------------------------------------------------------------

    def verify(self, *, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        """Whether the request was signed with ``secret``. Must do the same work whatever the
        outcome (it also runs with a dummy secret for unknown projects)."""
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
