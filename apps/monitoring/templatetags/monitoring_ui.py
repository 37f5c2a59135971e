"""Monitoring's parts of pages that releases renders: the environment page's monitoring card
and the promotion page's drift section. ``releases`` may not import monitoring
(docs/architecture.md); its templates load this library by name, a string reference."""

from django import template
from django.urls import reverse

from .. import selectors
from ..choices import AlertStatus
from ..models import Alert

register = template.Library()


@register.inclusion_tag("monitoring/_environment_card.html")
def monitoring_card(environment):
    """``{% monitoring_card environment %}``: the latest check's verdict, the alerts firing
    here, and the link to the environment's monitoring page (two queries)."""
    return {
        "environment": environment,
        "latest": selectors.latest_check(environment=environment),
        "firing": Alert.objects.filter(environment=environment, status=AlertStatus.FIRING).count(),
        "url": reverse(
            "monitoring:environment",
            kwargs={"slug": environment.project.slug, "name": environment.name},
        ),
    }


@register.inclusion_tag("monitoring/_promotion_drift.html")
def promotion_drift(promotion, gate=None):
    """``{% promotion_drift promotion evidence.gate %}``: the target environment's latest check
    and, for a release that a drift retrain built, the drift that asked for it, pointing at
    the gate's comparison when there is one."""
    environment = promotion.environment
    return {
        **selectors.promotion_drift(release=promotion.release, environment=environment),
        "gate": gate,
        "url": reverse(
            "monitoring:environment",
            kwargs={"slug": environment.project.slug, "name": environment.name},
        ),
    }


@register.filter
def score(value) -> str:
    """A score, threshold or share to four significant digits (a p-value of 3e-12 stays
    readable); "—" when there is none."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    return f"{value:.4g}"


@register.filter
def percent(value) -> str:
    """A share as a percentage to three significant digits: 0.004 → "0.4 %"."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    return f"{value * 100:.3g} %"
