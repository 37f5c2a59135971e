"""Forms of the releases pages: they parse what a person typed; the rules are the services'."""

from django import forms

from apps.projects.models import FreezeWindow


class FreezeWindowForm(forms.Form):
    """A freeze window on the environment page: the same fields as the API's."""

    cron = forms.CharField(
        max_length=FreezeWindow._meta.get_field("cron").max_length,
        help_text="When it opens, e.g. 0 17 * * 5 (Fridays 17:00).",
    )
    duration = forms.DurationField(help_text="How long it stays open, e.g. 2 15:00:00.")
    reason = forms.CharField(
        max_length=FreezeWindow._meta.get_field("reason").max_length, required=False
    )
