from django.utils import timezone
from rest_framework import authentication, exceptions

from .lockout import lockout_message, token_attempt_allowed, token_attempt_failed
from .models import ApiToken, hash_token


class TokenLockedOut(exceptions.Throttled):
    default_detail = "Too many failed attempts."


class BearerTokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Bearer cpt_…`` (``Token cpt_…`` is accepted too).

    Failed attempts are counted per address and per account (django-axes, apps/accounts/lockout.py):
    past the limit every attempt from there is refused with 429 until the cool-off ends or an
    admin unlocks it.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() not in (b"bearer", b"token"):
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header.")
        try:
            raw = header[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        # The Django request: axes reads its address and records the attempt on it.
        self._django_request = getattr(request, "_request", request)
        return self.authenticate_credentials(raw)

    def authenticate_credentials(self, key):
        request = getattr(self, "_django_request", None)
        token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(key)).first()
        username = token.user.get_username() if token is not None else None
        if request is not None and not token_attempt_allowed(request, username=username):
            raise TokenLockedOut(detail=lockout_message())
        if token is None or not token.is_active or not token.user.is_active:
            if request is not None and token_attempt_failed(request, username=username):
                raise TokenLockedOut(detail=lockout_message())
            raise exceptions.AuthenticationFailed("Invalid or expired token.")
        now = timezone.now()
        # Write at most once a minute: this runs on every API call.
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token
