"""GitLab: the *secret token* (``X-Gitlab-Token``, the project's webhook secret itself) and the
*signing token* (the project's ``webhook_signing_token``): two settings, each optional.

GitLab's signing token (GitLab 18.x, behind the ``webhook_signing_token`` flag at first) follows
the Standard Webhooks scheme: ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``{webhook-id}.{webhook-timestamp}.{body}``, keyed with the base64-decoded part of the token
(``whsec_<base64>``), plus ``webhook-id`` and ``webhook-timestamp`` headers. A delivery is
accepted when every credential the project has set verifies, each against its own value (a
header for a credential the project has not set is not looked at). A signature older than
``WEBHOOK_TIMESTAMP_TOLERANCE`` is refused.

System hooks (``X-Gitlab-Event: System Hook``) carry pushes as ``event_name: push`` /
``tag_push`` (no ``object_kind``) and list no commits; they start runs like project hooks.
"""

import time
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from ..verify import (
    DUMMY_SECRET,
    Credentials,
    constant_time_equals,
    header_bytes,
    standard_signature,
)
from .base import BaseProvider, Push, make_push, obj, text

SYSTEM_HOOK = "System Hook"
SYSTEM_HOOK_PUSHES = frozenset({"push", "tag_push"})


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
    credentials = ("secret", "signing_token")
    ping_events = frozenset()
    push_events = frozenset({"Push Hook", "Tag Push Hook"})

    def verify(self, *, headers: Mapping[str, str], body: bytes, credentials: Credentials) -> bool:
        # Both computed every time: the time taken says nothing about which are set.
        token_ok = constant_time_equals(
            headers.get("X-Gitlab-Token", ""), credentials.secret or DUMMY_SECRET
        )
        signature_ok = self._signature_ok(headers, body, credentials.signing_token or DUMMY_SECRET)
        if not credentials:
            return False
        return (token_ok or not credentials.secret) and (
            signature_ok or not credentials.signing_token
        )

    def _signature_ok(self, headers: Mapping[str, str], body: bytes, token: str) -> bool:
        msg_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        expected = standard_signature(
            token=token,
            msg_id=header_bytes(msg_id),
            timestamp=header_bytes(timestamp),
            body=body,
        )
        matched = False
        for part in headers.get("webhook-signature", "").split():
            version, _, value = part.partition(",")
            if version == "v1" and constant_time_equals(value, expected):
                matched = True
        fresh = (
            timestamp.isdigit()
            and abs(time.time() - int(timestamp)) <= settings.WEBHOOK_TIMESTAMP_TOLERANCE
        )
        return matched and fresh and bool(msg_id)

    def sign(self, *, secret: str, body: bytes, event: str, delivery_id: str) -> dict[str, str]:
        """The headers GitLab sends: ``secret`` as the secret token; a ``whsec_…`` value also
        signs (use :meth:`sign_with` for two different credentials)."""
        signing_token = secret if secret.startswith("whsec_") else ""
        return self.sign_with(
            secret=secret,
            signing_token=signing_token,
            body=body,
            event=event,
            delivery_id=delivery_id,
        )

    def sign_with(
        self, *, secret: str, signing_token: str, body: bytes, event: str, delivery_id: str
    ) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitLab/18.0.0",
            "X-Gitlab-Event": event,
            "X-Gitlab-Instance": "https://gitlab.example.com",
            "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
            "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            "Idempotency-Key": delivery_id,
        }
        if secret:
            headers["X-Gitlab-Token"] = secret
        if signing_token:
            timestamp = str(int(time.time()))
            headers["webhook-id"] = delivery_id
            headers["webhook-timestamp"] = timestamp
            headers["webhook-signature"] = "v1," + standard_signature(
                token=signing_token,
                msg_id=delivery_id.encode(),
                timestamp=timestamp.encode(),
                body=body,
            )
        return headers

    def kind(self, *, event: str, payload: Mapping[str, Any]) -> str | None:
        if event == SYSTEM_HOOK:
            # A system hook's push says so in event_name (object_kind is absent); newer
            # schema-based system events use object_kind.
            name = payload.get("event_name") or payload.get("object_kind")
            return "push" if name in SYSTEM_HOOK_PUSHES else None
        return super().kind(event=event, payload=payload)

    def parse_push(self, payload: Mapping[str, Any]) -> Push:
        # checkout_sha is the commit (also for an annotated tag, whose ``after`` is the tag
        # object); null when a ref is deleted.
        sha = text(payload.get("checkout_sha")) or payload.get("after")
        wanted = sha.lower() if isinstance(sha, str) else None
        commits = [obj(c) for c in payload.get("commits") or [] if isinstance(c, Mapping)]
        # Only the pushed commit's own details: GitLab lists at most 20 commits and system
        # hooks none, and another commit's message must not pass for this one's. When it is
        # not listed, the run reads message and author from the repository when it is prepared.
        head = next((c for c in commits if text(c.get("id")).lower() == wanted), {})
        author = obj(head.get("author"))
        repository = text(obj(payload.get("project")).get("web_url"))
        return make_push(
            ref=payload.get("ref"),
            sha=sha,
            message=head.get("message"),
            author=author.get("name"),
            author_email=author.get("email"),
            url=head.get("url"),
            repository=repository or obj(payload.get("repository")).get("homepage"),
        )
