"""Outgoing webhooks: the body, the headers and the signature (see docs/notifications.md).

``X-Controlplane-Signature: sha256=<hex>`` is HMAC-SHA256, keyed with the target's secret, of
``"<X-Controlplane-Timestamp>.<raw body>"``. A receiver recomputes it over the bytes it got,
compares in constant time and refuses timestamps far from its clock (replays).

:func:`send` posts one delivery to its target's URL.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from django.utils import timezone

from apps.core.transient import TransientError, is_transient_status

from .choices import DeliveryStatus
from .models import NotificationDelivery, NotificationTarget
from .outcome import Outcome

USER_AGENT = "controlplane-notifications"
SIGNATURE_PREFIX = "sha256="
#: Seconds a receiver should accept between the timestamp and its own clock.
DEFAULT_TOLERANCE = 300
#: Seconds to connect to / read from a webhook target.
TIMEOUT = (5, 10)


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


def send(delivery: NotificationDelivery, target: NotificationTarget) -> Outcome:
    """POST the signed body to the target's URL; a 2xx is sent, a transient status or no
    answer is retried, anything else is final."""
    if not target.secret:
        return Outcome(DeliveryStatus.FAILED, error="The target has no secret.")
    project = delivery.project
    request = build_request(
        event=delivery.event,
        delivery_uuid=str(delivery.uuid),
        project={
            "id": project.pk,
            "slug": project.slug,
            "name": project.name,
            "url": settings.SITE_URL + project.get_absolute_url(),
        },
        data=delivery.payload,
        secret=target.secret,
        delivered_at=timezone.now().isoformat(),
    )
    try:
        response = requests.post(
            target.destination,
            data=request.body,
            headers=request.headers,
            timeout=TIMEOUT,
            # A redirect is an answer we do not follow (it could lead anywhere).
            allow_redirects=False,
        )
    # TRICKY: not core's is_transient(): every requests exception is an OSError, so it would
    # call an invalid URL transient too. Only "no answer" is.
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"{type(exc).__name__}: {exc}"[:500]) from exc
    except requests.RequestException as exc:  # an invalid URL, …: retrying will not help
        return Outcome(DeliveryStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:500])
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(DeliveryStatus.SENT, response_code=code)
    message = f"HTTP {code}: {response.text[:500]}"
    if is_transient_status(code):
        raise TransientError(message, code)
    return Outcome(DeliveryStatus.FAILED, response_code=code, error=message)
