"""GitHub (and GitHub Enterprise Server): ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256>``.

``X-GitHub-Delivery`` names the *event*: every hook subscribed to it gets the same GUID (and a
redelivery of one hook keeps it), so a delivery is ``X-GitHub-Hook-ID`` + ``X-GitHub-Delivery``.
"""

from collections.abc import Mapping
from typing import Any

from ..verify import DUMMY_SECRET, Credentials, constant_time_equals, hmac_sha256_hex
from .base import BaseProvider, Push, make_push, obj, text


class GitHub(BaseProvider):
    name = "github"
    event_headers = ("X-GitHub-Event",)
    delivery_headers = ("X-GitHub-Delivery",)
    hook_header = "X-GitHub-Hook-ID"
    extra_stored_headers = (
        "X-GitHub-Hook-Installation-Target-ID",
        "X-GitHub-Hook-Installation-Target-Type",
    )
    signature_header = "X-Hub-Signature-256"

    def verify(self, *, headers: Mapping[str, str], body: bytes, credentials: Credentials) -> bool:
        expected = "sha256=" + hmac_sha256_hex(credentials.secret or DUMMY_SECRET, body)
        signed = constant_time_equals(headers.get(self.signature_header, ""), expected)
        return signed and bool(credentials.secret)

    def sign(self, *, secret: str, body: bytes, event: str, delivery_id: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/controlplane-test",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery_id,
            "X-GitHub-Hook-ID": "1",
            self.signature_header: "sha256=" + hmac_sha256_hex(secret, body),
        }

    def parse_push(self, payload: Mapping[str, Any]) -> Push:
        # ``after`` is the tag object for an annotated tag; head_commit is the commit itself.
        head = obj(payload.get("head_commit"))
        author = obj(head.get("author"))
        return make_push(
            ref=payload.get("ref"),
            sha=text(head.get("id")) or payload.get("after"),
            deleted=payload.get("deleted") is True,
            message=head.get("message"),
            author=author.get("name"),
            author_email=author.get("email"),
            url=head.get("url"),
            repository=obj(payload.get("repository")).get("html_url"),
        )
