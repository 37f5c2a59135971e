from django import template

from .. import selectors, services

register = template.Library()


@register.simple_tag
def approvals_waiting(user) -> int:
    """How many open promotions wait for ``user``'s decision (the nav badge)."""
    if not getattr(user, "is_authenticated", False):
        return 0
    return sum(
        1
        for p in selectors.approval_inbox(user=user)
        if not p.my_decision and services.promotion_decision_blocker(promotion=p, user=user) is None
    )
