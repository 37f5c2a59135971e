"""GitHub (and GitHub Enterprise Server): ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256>``."""

from collections.abc import Mapping
from typing import Any

from .base import BaseProvider, Push, constant_time_equals, hmac_sha256_hex, make_push, obj, text


class GitHub(BaseProvider):
    name = "github"
    event_headers = ("X-GitHub-Event",)
    delivery_headers = ("X-GitHub-Delivery",)
    extra_stored_headers = (
        "X-GitHub-Hook-ID",
        "X-GitHub-Hook-Installation-Target-ID",
        "X-GitHub-Hook-Installation-Target-Type",
    )
    signature_header = "X-Hub-Signature-256"

    def verify(self, *, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        expected = "sha256=" + hmac_sha256_hex(secret, body)
        return constant_time_equals(headers.get(self.signature_header, ""), expected)

    def sign(self, *, secret: str, body: bytes, event: str, delivery_id: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/controlplane-test",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery_id,
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
