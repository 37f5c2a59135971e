"""Service health and automatic rollback on the pages of releases (the environment and the
deployment pages). `releases` may not import `monitoring` (docs/architecture.md); its templates
load this library, a template-level reference, not a Python import."""

from django import template
from django.utils import timezone

from ..models import ServiceHealth
from ..rollback import watch_ends

register = template.Library()


@register.inclusion_tag("monitoring/_rollback_environment.html")
def environment_rollback(environment, serving=None) -> dict:
    """``{% environment_rollback environment serving %}``: the rollback settings, whether the
    watch after the serving deployment is open, and the latest probe of the service."""
    ends = watch_ends(serving) if serving is not None else None
    return {
        "environment": environment,
        "watch_ends": ends,
        "watching": ends is not None and ends > timezone.now(),
        "health": ServiceHealth.objects.filter(environment=environment).first(),
    }


@register.inclusion_tag("monitoring/_rollback_deployment.html")
def deployment_rollback(deployment) -> dict:
    """``{% deployment_rollback deployment %}``: why a deployment was an automatic rollback,
    or which alert rolled it back."""
    details = deployment.details or {}
    return {
        "deployment": deployment,
        "made_by": details.get("automatic_rollback"),
        "undone_by": details.get("rolled_back_by_alert"),
    }
