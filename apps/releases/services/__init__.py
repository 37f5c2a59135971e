"""Every write of the releases app, by noun:

- ``releases``: making a release (from a pipeline run too), blocking it, moving it on;
- ``promotions``: requesting, approving, rejecting, expiring promotions (the approval rules);
- ``deployments``: requesting a deployment or a rollback and carrying it out;
- ``transitions``: the deployment and promotion state machines.

Import from here (``from apps.releases.services import promotion_approve``); the modules are
where to read and change the code.
"""

from .deployments import (
    deployment_execute,
    deployment_log,
    deployment_request,
    deployment_rollback,
    deployment_sweep,
)
from .promotions import (
    REJECTION_NEEDS_A_COMMENT,
    promotion_approve,
    promotion_decision_blocker,
    promotion_expire_due,
    promotion_reject,
    promotion_remind_due,
    promotion_request,
)
from .releases import (
    release_advance,
    release_block,
    release_create,
    release_create_from_run,
    release_from_run,
)
from .transitions import deployment_transition, promotion_transition

__all__ = [
    "REJECTION_NEEDS_A_COMMENT",
    "deployment_execute",
    "deployment_log",
    "deployment_request",
    "deployment_rollback",
    "deployment_sweep",
    "deployment_transition",
    "promotion_approve",
    "promotion_decision_blocker",
    "promotion_expire_due",
    "promotion_reject",
    "promotion_remind_due",
    "promotion_request",
    "promotion_transition",
    "release_advance",
    "release_block",
    "release_create",
    "release_create_from_run",
    "release_from_run",
]
