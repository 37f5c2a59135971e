from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core.services import audit_log

from .models import ApiToken, hash_token


@transaction.atomic
def api_token_create(
    *, user, name: str, expires_at: datetime | None = None, actor: Any = None
) -> tuple[ApiToken, str]:
    """Create a token and return it with its raw value, which is shown this once only."""
    raw = ApiToken.generate()
    token = ApiToken.objects.create(
        user=user, name=name, key_hash=hash_token(raw), prefix=raw[:10], expires_at=expires_at
    )
    audit_log(actor=actor or user, action="api_token.created", obj=token)
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: Any) -> ApiToken:
    """Revoke a token at once; it authenticates nothing from now on."""
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_log(actor=actor, action="api_token.revoked", obj=token)
    return token
