"""The target form of the project's notifications page. It only reads the request; the checks
that matter (channel id, addresses, URL, secret length, events per kind) are the services'."""

from typing import Any

from django import forms

from apps.monitoring.choices import Severity

from .choices import Event, TargetKind
from .models import NotificationTarget


class TargetForm(forms.Form):
    kind = forms.ChoiceField(choices=TargetKind.choices)
    name = forms.CharField(max_length=100, required=False, help_text="A label for people.")
    destination = forms.CharField(
        max_length=1000,
        required=False,
        help_text="Slack: the channel id (C0123ABCD) or #name. Email: comma-separated "
        "addresses (may be empty: approval requests still go to the approvers). Webhook: the URL.",
    )
    secret = forms.CharField(
        max_length=500,
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Webhooks: the HMAC key of X-Controlplane-Signature, 16 characters or more.",
    )
    events = forms.MultipleChoiceField(
        choices=Event.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event the kind takes.",
    )
    min_severity = forms.ChoiceField(
        choices=[("", "Every alert"), *Severity.choices],
        required=False,
        label="Alerts from severity",
        help_text="Alerts less severe than this are not sent here (other events are).",
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, target: NotificationTarget | None = None, **kwargs: Any):
        self.target = target
        if target is not None:
            kwargs.setdefault(
                "initial",
                {
                    "kind": target.kind,
                    "name": target.name,
                    # A webhook URL may carry a token: not sent back to the browser.
                    "destination": "" if target.kind == TargetKind.WEBHOOK else target.destination,
                    "events": target.events,
                    "min_severity": target.min_severity,
                    "enabled": target.enabled,
                },
            )
        super().__init__(*args, **kwargs)
        if target is not None:
            self.fields["kind"].disabled = True  # fixed at creation
            if target.secret:
                self.fields["secret"].help_text = "Set. Leave empty to keep it."
            if target.kind == TargetKind.WEBHOOK:
                self.fields[
                    "destination"
                ].help_text = f"Now {target.destination_display}. Leave empty to keep it."

    def changes(self) -> dict[str, Any]:
        """The cleaned data as ``target_update`` changes: empty secret (and webhook URL) keep
        the current one."""
        data = {k: v for k, v in self.cleaned_data.items() if k != "kind"}
        if not data.get("secret"):
            data["secret"] = None
        if self.target is not None and self.target.kind == TargetKind.WEBHOOK:
            if not data.get("destination"):
                data.pop("destination", None)
        return data
