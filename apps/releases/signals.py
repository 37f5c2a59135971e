"""Signals the releases app sends (after commit). Apps to the right (notifications) listen;
releases never imports them."""

from django.dispatch import Signal

#: A promotion changed status. kwargs: ``promotion``, ``from_status``, ``to_status``.
promotion_status_changed = Signal()

#: A pending promotion is close to its approval deadline. kwargs: ``promotion``.
promotion_reminder = Signal()

#: A deployment changed status. kwargs: ``deployment``, ``from_status``, ``to_status``.
#: A failed deployment whose previous release kept (or went back to) serving moves on to
#: ``rolled_back``; a rollback the user asked for is a deployment with ``is_rollback=True``.
deployment_status_changed = Signal()

#: An approval or rejection was recorded. kwargs: ``approval`` (with ``promotion``).
approval_recorded = Signal()
