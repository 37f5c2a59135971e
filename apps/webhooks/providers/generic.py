"""Any sender that can sign a JSON body: ``X-Controlplane-Signature: sha256=<hex HMAC-SHA256>``.

Payload: ``ref`` (``refs/heads/main``, ``refs/tags/v1`` or a bare branch name), ``commit`` (or
``after``), ``repository`` (URL); optional ``message``, ``author`` (a name, or an object with
``name`` and ``email``), ``author_email``, ``url`` (the commit's page). See docs/webhooks.md.
"""

from collections.abc import Mapping
from typing import Any

from ..verify import DUMMY_SECRET, Credentials, constant_time_equals, hmac_sha256_hex
from .base import BaseProvider, Push, make_push, obj, text


class Generic(BaseProvider):
    name = "generic"
    event_headers = ("X-Controlplane-Event",)
    delivery_headers = ("Idempotency-Key",)
    push_events = frozenset({"push", "tag_push"})
    default_event = "push"
    signature_header = "X-Controlplane-Signature"

    def verify(self, *, headers: Mapping[str, str], body: bytes, credentials: Credentials) -> bool:
        expected = "sha256=" + hmac_sha256_hex(credentials.secret or DUMMY_SECRET, body)
        signed = constant_time_equals(headers.get(self.signature_header, ""), expected)
        return signed and bool(credentials.secret)

    def sign(self, *, secret: str, body: bytes, event: str, delivery_id: str) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "X-Controlplane-Event": event,
            self.signature_header: "sha256=" + hmac_sha256_hex(secret, body),
        }
        if delivery_id:
            headers["Idempotency-Key"] = delivery_id
        return headers

    def parse_push(self, payload: Mapping[str, Any]) -> Push:
        author = payload.get("author")
        name, email = (
            (text(obj(author).get("name")), text(obj(author).get("email")))
            if isinstance(author, Mapping)
            else (text(author), "")
        )
        repository = payload.get("repository")
        if isinstance(repository, Mapping):
            repository = repository.get("url")
        return make_push(
            ref=payload.get("ref"),
            sha=text(payload.get("commit")) or payload.get("after"),
            bare_is_branch=True,
            message=payload.get("message"),
            author=name,
            author_email=email or text(payload.get("author_email")),
            url=payload.get("url"),
            repository=repository,
        )
