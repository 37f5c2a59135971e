import json
from pathlib import Path

import pytest
from django.urls import reverse

from apps.webhooks.outbox import delivery_start_runs
from apps.webhooks.testing import sign

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "a-long-random-webhook-secret-for-tests"


def payload_bytes(provider: str, name: str) -> bytes:
    """``tests/webhooks/fixtures/<provider>/<event>__<variant>.json`` as the server sends it."""
    return (FIXTURES / provider / f"{name}.json").read_bytes()


def payload(provider: str, name: str) -> dict:
    return json.loads(payload_bytes(provider, name))


def hook_url(provider: str, slug: str) -> str:
    return reverse("hooks:receive", kwargs={"provider": provider, "slug": slug})


@pytest.fixture
def hook_project(project):
    """The ``project`` fixture with a webhook secret."""
    project.webhook_secret = SECRET
    project.save()
    return project


@pytest.fixture
def deliver(client, hook_project):
    """deliver(provider, body, event=…, delivery_id=…) → the receiver's response.

    Signs with :func:`apps.webhooks.testing.sign`; ``secret``/``slug`` override the project's,
    ``headers`` adds or replaces headers (a value of None removes one). Then does what the
    worker woken by the receiver does, :func:`delivery_start_runs` (the real service), unless
    ``start_runs=False``: an accepted push has its run when this returns."""

    def send(
        provider: str,
        body: bytes,
        *,
        event: str | None = None,
        delivery_id: str | None = None,
        secret: str = SECRET,
        slug: str | None = None,
        headers: dict | None = None,
        content_type: str = "application/json",
        start_runs: bool = True,
        signing_token: str | None = None,
    ):
        signed = sign(
            provider,
            secret,
            body,
            event=event,
            delivery_id=delivery_id,
            signing_token=signing_token,
        )
        signed.pop("Content-Type")
        for name, value in (headers or {}).items():
            signed.pop(name, None)
            if value is not None:
                signed[name] = value
        response = client.post(
            hook_url(provider, slug or hook_project.slug),
            data=body,
            content_type=content_type,
            headers=signed,
        )
        if start_runs:
            delivery_start_runs()
        return response

    return send
