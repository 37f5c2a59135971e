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
    signing_token: str | None = None,
) -> dict[str, str]:
    """The headers ``provider`` sends with ``body``: signature (or token), event, delivery id
    and content type. ``event`` defaults to the provider's push event, ``delivery_id`` to a
    fresh UUID. For GitLab a secret of the form ``whsec_<base64>`` adds the signing-token
    headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``); ``signing_token``
    (GitLab only) signs with that token and sends ``secret`` as the secret token (``""``: none).
    """
    source = get_provider(provider)
    event = event or PUSH_EVENTS[provider]
    delivery_id = delivery_id if delivery_id is not None else str(uuid.uuid4())
    if signing_token is not None:
        return source.sign_with(
            secret=secret,
            signing_token=signing_token,
            body=body,
            event=event,
            delivery_id=delivery_id,
        )
    return source.sign(secret=secret, body=body, event=event, delivery_id=delivery_id)
