from typing import Any

from django.db.models import QuerySet

from apps.accounts.permissions import restrict_to_visible

from .models import NotificationDelivery, NotificationTarget, SlackIdentity


def target_list(*, user: Any) -> QuerySet[NotificationTarget]:
    """Targets of the projects the user may see."""
    qs = NotificationTarget.objects.select_related("project", "created_by")
    return restrict_to_visible(qs, user)


def delivery_list(*, user: Any) -> QuerySet[NotificationDelivery]:
    """The delivery ledger of the projects the user may see."""
    qs = NotificationDelivery.objects.select_related("project", "target")
    return restrict_to_visible(qs, user)


def slack_identity_for(*, user: Any) -> SlackIdentity | None:
    if not user.is_authenticated:
        return None
    return SlackIdentity.objects.filter(user=user).first()
