"""Sign a body as a Git server would, for tests and benchmarks.

    >>> headers = sign("github", "s3cret", body, event="push", delivery_id="d-1")
    >>> client.post(url, body, content_type="application/json", headers=headers)

No database access and no Django request machinery: usable from a load generator.
"""

import uuid

from .providers import get_provider

#: The event name each provider uses for a branch push.
PUSH_EVENTS = {"github": "push", "gitlab": "Push Hook", "gitea": "push", "generic": "push"}


def sign(
    provider: str,
    secret: str,
    body: bytes,
    *,
    event: str | None = None,
    delivery_id: str | None = None,
) -> dict[str, str]:
    """The headers ``provider`` sends with ``body``: signature (or token), event, delivery id
    and content type. ``event`` defaults to the provider's push event, ``delivery_id`` to a
    fresh UUID. For GitLab a secret of the form ``whsec_<base64>`` adds the signing-token
    headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)."""
    return get_provider(provider).sign(
        secret=secret,
        body=body,
        event=event or PUSH_EVENTS[provider],
        delivery_id=delivery_id if delivery_id is not None else str(uuid.uuid4()),
    )
