"""Where a webhook delivery is verified: which of the project's credentials a provider checks,
and the constant-time primitives every provider's check is built from.

:func:`delivery_verify` is the one entry point (the receiver calls it before parsing anything).
Each provider's own scheme is its ``verify`` method in ``providers/<name>.py``:

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` (the project's secret);
- GitLab: ``X-Gitlab-Token`` (the project's secret) and/or the Standard Webhooks signature
  ``webhook-signature`` (the project's *signing token*): every credential the project has set
  must verify, each against its own secret;
- Gitea / Forgejo: ``X-Forgejo-Signature`` / ``X-Gitea-Signature``: hex HMAC-SHA256 of the JSON
  payload (for a form-encoded delivery, of the ``payload`` field, which is what Gitea signs);
- generic: ``X-Controlplane-Signature: sha256=<hex HMAC-SHA256 of the body>``.

An unknown project, a project without the credentials a provider needs and a bad signature are
refused alike, after the same work (a dummy decryption for each credential that is not there, a
dummy HMAC), so neither the answer nor its timing tells whether a project exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from apps.core.fields import decrypt, encrypt

if TYPE_CHECKING:
    from .providers import BaseProvider

#: Credential name (as providers list them) → the Project column that holds it.
CREDENTIAL_FIELDS = {"secret": "webhook_secret", "signing_token": "webhook_signing_token"}
# Used in place of a credential that is not set, so refusing takes as long as checking.
DUMMY_SECRET = "controlplane-no-such-webhook-secret-0000000000000000"  # noqa: S105
#: Standard Webhooks signing keys are ``whsec_<base64 key>``.
SIGNING_PREFIX = "whsec_"


@dataclass(frozen=True)
class Credentials:
    """The project's webhook credentials a provider checks (empty: not set)."""

    secret: str = field(default="", repr=False)
    signing_token: str = field(default="", repr=False)

    def __bool__(self) -> bool:
        return bool(self.secret or self.signing_token)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    #: Why it was refused, for the ledger (never for the sender).
    reason: str = ""


def delivery_verify(
    *,
    source: BaseProvider,
    project: Any,
    headers: Mapping[str, str],
    body: bytes,
    content_type: str,
) -> Verdict:
    """Whether ``body`` was sent by someone holding the project's credentials for ``source``."""
    credentials = project_credentials(source, project)
    signed = source.verify(
        headers=headers,
        body=source.signed_bytes(body=body, content_type=content_type),
        credentials=credentials,
    )
    if project is None:
        return Verdict(False, "No project with this slug.")
    if not credentials:
        return Verdict(False, "The project has no webhook secret.")
    if not signed:
        return Verdict(False, "Bad or missing signature.")
    return Verdict(True)


def project_credentials(source: BaseProvider, project: Any) -> Credentials:
    """The credentials ``source`` checks, read from the project (decrypted as the row was read).
    A dummy is decrypted for each one that is missing, so the work does not depend on it."""
    values = {}
    for name in source.credentials:
        value = getattr(project, CREDENTIAL_FIELDS[name], "") if project is not None else ""
        if not value:
            _same_work_as_loading_a_secret()
        values[name] = value or ""
    return Credentials(**values)


def receiver_fields(source: BaseProvider) -> tuple[str, ...]:
    """The project columns holding ``source``'s credentials (the receiver loads only these)."""
    return tuple(CREDENTIAL_FIELDS[name] for name in source.credentials)


def _same_work_as_loading_a_secret() -> None:
    # TRICKY: loading a project decrypts its credentials (Fernet). Decrypt a dummy for each one
    # that is not there, so the time taken does not tell whether the slug or secret exists.
    decrypt(_dummy_ciphertext())


_dummy: list[str] = []


def _dummy_ciphertext() -> str:
    if not _dummy:
        _dummy.append(encrypt(DUMMY_SECRET))
    return _dummy[0]


# --- primitives -------------------------------------------------------------------------------


def hmac_sha256_hex(secret: str | bytes, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def header_bytes(value: str) -> bytes:
    """The bytes a header value arrived as (WSGI hands them over decoded as latin-1)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def constant_time_equals(given: str, expected: str) -> bool:
    return hmac.compare_digest(header_bytes(given), expected.encode())


def signing_key(token: str) -> bytes:
    """The HMAC key of a Standard Webhooks token: the base64-decoded part of ``whsec_<base64>``
    (any other value is used as it is)."""
    if token.startswith(SIGNING_PREFIX):
        try:
            return base64.b64decode(token[len(SIGNING_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            pass
    return token.encode()


def standard_signature(*, token: str, msg_id: bytes, timestamp: bytes, body: bytes) -> str:
    """Standard Webhooks ``v1`` signature: base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``."""
    digest = hmac.new(
        signing_key(token), msg_id + b"." + timestamp + b"." + body, hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()
