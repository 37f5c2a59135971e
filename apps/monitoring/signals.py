"""What the CM loop tells the apps to its right (notifications). Sent after commit."""

from django.dispatch import Signal

# An alert fired, was acknowledged or resolved: kwargs ``alert``, ``old`` and ``new`` (statuses;
# an acknowledgement has old == new == "firing" and ``acknowledged=True``).
alert_status_changed = Signal()

# Alerts that are due to be told to people now: silences, grouping and the repeat interval
# have been applied (apps/monitoring/dispatch.py). kwargs: ``alert_ids`` (list[int]),
# ``group_key`` (str) and ``reason`` ("firing", "resolved" or "repeat").
alerts_notify = Signal()
