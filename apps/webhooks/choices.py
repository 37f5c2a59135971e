"""Providers, delivery outcomes and the commit-status vocabulary of each Git server."""

from django.db import models

from apps.pipelines.choices import RunStatus
from apps.projects.choices import GitProvider

#: The receivers are the project's Git providers: one URL each.
Provider = GitProvider


class DeliveryStatus(models.TextChoices):
    """What became of a delivery. A ledger row is written once with its status, which it keeps
    but for one move (:data:`DELIVERY_TRANSITIONS`): an accepted push whose run the worker could
    not start becomes ``error``."""

    ACCEPTED = "accepted", "Accepted (run started)"
    DUPLICATE = "duplicate", "Duplicate (already received)"
    IGNORED = "ignored", "Ignored"
    PING = "ping", "Ping"
    REJECTED = "rejected", "Rejected (signature or project)"
    INVALID = "invalid", "Invalid (malformed or too large)"
    ERROR = "error", "Error"


#: The ledger's one state change, made through ``apps.core.services.state_transition`` (locked,
#: checked, audited): accepted → error when the run cannot be started. Every other status is
#: final from the insert on.
DELIVERY_TRANSITIONS: dict[str, frozenset[str]] = {
    DeliveryStatus.ACCEPTED: frozenset({DeliveryStatus.ERROR}),
}
#: Outcomes whose payload was authenticated and stored, so they can be redelivered.
DELIVERY_REDELIVERABLE = frozenset(
    {
        DeliveryStatus.ACCEPTED,
        DeliveryStatus.DUPLICATE,
        DeliveryStatus.IGNORED,
        DeliveryStatus.PING,
        DeliveryStatus.ERROR,
    }
)
#: Outcomes of requests we could not trust or read; pruned after the retention period.
DELIVERY_UNTRUSTED = frozenset({DeliveryStatus.REJECTED, DeliveryStatus.INVALID})


class RefType(models.TextChoices):
    BRANCH = "branch", "Branch"
    TAG = "tag", "Tag"


#: Run status → the ``state`` each Git server's commit-status API takes.
COMMIT_STATES: dict[str, dict[str, str]] = {
    Provider.GITHUB: {
        RunStatus.QUEUED: "pending",
        RunStatus.RUNNING: "pending",
        RunStatus.SUCCEEDED: "success",
        RunStatus.FAILED: "failure",
        RunStatus.CANCELED: "error",
    },
    Provider.GITLAB: {
        RunStatus.QUEUED: "pending",
        RunStatus.RUNNING: "running",
        RunStatus.SUCCEEDED: "success",
        RunStatus.FAILED: "failed",
        RunStatus.CANCELED: "canceled",
    },
    Provider.GITEA: {
        RunStatus.QUEUED: "pending",
        RunStatus.RUNNING: "pending",
        RunStatus.SUCCEEDED: "success",
        RunStatus.FAILED: "failure",
        RunStatus.CANCELED: "error",
    },
}

#: The label the status carries on the Git server (GitHub/Gitea ``context``, GitLab ``name``).
COMMIT_STATUS_CONTEXT = "controlplane/pipeline"
