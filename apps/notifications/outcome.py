"""What became of one send: the answer every channel's ``send(delivery, target)`` gives.

A channel returns an :class:`Outcome` for a final answer (sent, failed, skipped) and raises
:class:`apps.core.transient.TransientError` for one worth retrying; the ledger
(:func:`apps.notifications.services.delivery_send`) records either on the delivery row.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    status: str
    response_code: int | None = None
    error: str = ""
    #: Channel-specific columns of the delivery row to set (Slack's channel and ``ts``).
    fields: dict[str, Any] = field(default_factory=dict)
