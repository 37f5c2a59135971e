"""GitLab: ``X-Gitlab-Token`` (the secret itself) and, where GitLab signs, its signing token.

GitLab's signing token (GitLab 18.x, behind the ``webhook_signing_token`` flag at first) follows
the Standard Webhooks scheme: ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``{webhook-id}.{webhook-timestamp}.{body}``, keyed with the base64-decoded part of the token
(``whsec_<base64>``), plus ``webhook-id`` and ``webhook-timestamp`` headers. The project's one
webhook secret serves as both: whichever of the two GitLab sends is checked, and when it sends
both, both must hold. A signature older than ``WEBHOOK_TIMESTAMP_TOLERANCE`` is refused.
"""

import base64
import binascii
import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from .base import (
    BaseProvider,
    Push,
    constant_time_equals,
    header_bytes,
    make_push,
    obj,
    text,
)

SIGNING_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    if secret.startswith(SIGNING_PREFIX):
        try:
            return base64.b64decode(secret[len(SIGNING_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def standard_signature(*, secret: str, msg_id: bytes, timestamp: bytes, body: bytes) -> str:
    digest = hmac.new(
        signing_key(secret), msg_id + b"." + timestamp + b"." + body, hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


class GitLab(BaseProvider):
    name = "gitlab"
    event_headers = ("X-Gitlab-Event",)
    # Idempotency-Key stays the same when GitLab retries a delivery; the UUIDs may not.
    delivery_headers = (
        "Idempotency-Key",
        "webhook-id",
        "X-Gitlab-Webhook-UUID",
        "X-Gitlab-Event-UUID",
    )
    extra_stored_headers = ("X-Gitlab-Instance", "webhook-timestamp")
    ping_events = frozenset()
    push_events = frozenset({"Push Hook", "Tag Push Hook"})

    def verify(self, *, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        token = headers.get("X-Gitlab-Token", "")
        signature = headers.get("webhook-signature", "")
        # Both computed every time: the time taken says nothing about the secret.
        token_ok = constant_time_equals(token, secret)
        signature_ok = self._signature_ok(headers, body, secret, signature)
        if not token and not signature:
            return False
        return (token_ok or not token) and (signature_ok or not signature)

    def _signature_ok(
        self, headers: Mapping[str, str], body: bytes, secret: str, signature: str
    ) -> bool:
        msg_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        expected = standard_signature(
            secret=secret,
            msg_id=header_bytes(msg_id),
            timestamp=header_bytes(timestamp),
            body=body,
        )
        matched = False
        for part in signature.split():
            version, _, value = part.partition(",")
            if version == "v1" and constant_time_equals(value, expected):
                matched = True
        fresh = (
            timestamp.isdigit()
            and abs(time.time() - int(timestamp)) <= settings.WEBHOOK_TIMESTAMP_TOLERANCE
        )
        return matched and fresh and bool(msg_id)

    def sign(self, *, secret: str, body: bytes, event: str, delivery_id: str) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitLab/18.0.0",
            "X-Gitlab-Event": event,
            "X-Gitlab-Token": secret,
            "X-Gitlab-Instance": "https://gitlab.example.com",
            "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
            "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            "Idempotency-Key": delivery_id,
        }
        if secret.startswith(SIGNING_PREFIX):
            timestamp = str(int(time.time()))
            headers["webhook-id"] = delivery_id
            headers["webhook-timestamp"] = timestamp
            headers["webhook-signature"] = "v1," + standard_signature(
                secret=secret,
                msg_id=delivery_id.encode(),
                timestamp=timestamp.encode(),
                body=body,
            )
        return headers

    def kind(self, *, event: str, payload: Mapping[str, Any]) -> str | None:
        if event == "System Hook" and payload.get("object_kind") in ("push", "tag_push"):
            return "push"
        return super().kind(event=event, payload=payload)

    def parse_push(self, payload: Mapping[str, Any]) -> Push:
        # checkout_sha is the commit (also for an annotated tag); null when a ref is deleted.
        sha = text(payload.get("checkout_sha")) or payload.get("after")
        commits = [obj(c) for c in payload.get("commits") or [] if isinstance(c, Mapping)]
        head = next((c for c in commits if c.get("id") == sha), commits[-1] if commits else {})
        author = obj(head.get("author"))
        repository = text(obj(payload.get("project")).get("web_url"))
        return make_push(
            ref=payload.get("ref"),
            sha=sha,
            message=text(head.get("message")) or payload.get("message"),
            author=author.get("name"),
            author_email=author.get("email"),
            url=head.get("url"),
            repository=repository or obj(payload.get("repository")).get("homepage"),
        )
