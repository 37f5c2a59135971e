"""Outgoing webhooks: the body, the headers and the signature (see docs/notifications.md).

``X-Controlplane-Signature: sha256=<hex>`` is HMAC-SHA256, keyed with the target's secret, of
``"<X-Controlplane-Timestamp>.<raw body>"``. A receiver recomputes it over the bytes it got,
compares in constant time and refuses timestamps far from its clock (replays).
"""

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

USER_AGENT = "controlplane-notifications"
SIGNATURE_PREFIX = "sha256="
#: Seconds a receiver should accept between the timestamp and its own clock.
DEFAULT_TOLERANCE = 300


@dataclass(frozen=True)
class WebhookRequest:
    body: bytes
    headers: dict[str, str]
    secrets: tuple[str, ...] = field(default=(), repr=False)


def signature(*, secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + digest.hexdigest()


def build_request(
    *,
    event: str,
    delivery_uuid: str,
    project: Mapping[str, Any],
    data: Mapping[str, Any],
    secret: str,
    delivered_at: str,
    timestamp: int | None = None,
) -> WebhookRequest:
    body = json.dumps(
        {"event": event, "delivered_at": delivered_at, "project": project, "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return WebhookRequest(
        body=body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Controlplane-Event": event,
            "X-Controlplane-Delivery": delivery_uuid,
            "X-Controlplane-Timestamp": stamp,
            "X-Controlplane-Signature": signature(secret=secret, timestamp=stamp, body=body),
        },
        secrets=(secret,),
    )


def verify(
    *,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """What a receiver does (the reference for docs/notifications.md and the tests)."""
    lower = {k.lower(): v for k, v in headers.items()}
    stamp = lower.get("x-controlplane-timestamp", "")
    given = lower.get("x-controlplane-signature", "")
    if not stamp.isdigit() or not given:
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance:
        return False
    return hmac.compare_digest(signature(secret=secret, timestamp=stamp, body=body), given)
