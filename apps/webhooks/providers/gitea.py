"""Gitea and Forgejo: ``X-Gitea-Signature`` / ``X-Forgejo-Signature``: hex HMAC-SHA256 of the
JSON payload. Forgejo sends both headers; when ``X-Forgejo-Signature`` is there it is the one
checked.

TRICKY: with *POST content type* ``application/x-www-form-urlencoded`` Gitea sends
``payload=<the JSON, URL-encoded>`` but signs the JSON itself, not the form body it sends; the
signature is checked over the ``payload`` field's value.
"""

from collections.abc import Mapping
from typing import Any

from ..verify import DUMMY_SECRET, Credentials, constant_time_equals, hmac_sha256_hex
from .base import FORM, BaseProvider, Push, form_payload, make_push, obj, text


class Gitea(BaseProvider):
    name = "gitea"
    event_headers = ("X-Forgejo-Event", "X-Gitea-Event", "X-Gogs-Event")
    delivery_headers = ("X-Forgejo-Delivery", "X-Gitea-Delivery", "X-Gogs-Delivery")
    extra_stored_headers = ("X-Forgejo-Event-Type", "X-Gitea-Event-Type")
    signature_headers = ("X-Forgejo-Signature", "X-Gitea-Signature")

    def signed_bytes(self, *, body: bytes, content_type: str) -> bytes:
        if content_type != FORM:
            return body
        payload = form_payload(body)
        # No payload field: nothing was signed; check (and fail) over the body, same work.
        return body if payload is None else payload

    def verify(self, *, headers: Mapping[str, str], body: bytes, credentials: Credentials) -> bool:
        expected = hmac_sha256_hex(credentials.secret or DUMMY_SECRET, body)
        signed = constant_time_equals(self._first(headers, self.signature_headers), expected)
        return signed and bool(credentials.secret)

    def sign(self, *, secret: str, body: bytes, event: str, delivery_id: str) -> dict[str, str]:
        signature = hmac_sha256_hex(secret, body)
        return {
            "Content-Type": "application/json",
            "User-Agent": "Go-http-client/1.1",
            "X-Gitea-Event": event,
            "X-Gitea-Event-Type": event,
            "X-Gitea-Delivery": delivery_id,
            "X-Gitea-Signature": signature,
            "X-Forgejo-Event": event,
            "X-Forgejo-Delivery": delivery_id,
            "X-Forgejo-Signature": signature,
        }

    def parse_push(self, payload: Mapping[str, Any]) -> Push:
        after = payload.get("after")
        head = obj(payload.get("head_commit"))
        if not head:
            commits = payload.get("commits") if isinstance(payload.get("commits"), list) else []
            head = next((obj(c) for c in commits if obj(c).get("id") == after), {})
        author = obj(head.get("author"))
        return make_push(
            ref=payload.get("ref"),
            sha=text(head.get("id")) or after,
            message=head.get("message"),
            author=author.get("name"),
            author_email=author.get("email"),
            url=head.get("url"),
            repository=obj(payload.get("repository")).get("html_url"),
        )
