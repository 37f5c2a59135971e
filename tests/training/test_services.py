"""The model registry: a registration gives the next version, the same artifact is the same
version, and each registration is audited."""

import pytest

from apps.core.models import AuditEvent
from apps.training.services import model_version_register

pytestmark = pytest.mark.django_db


def test_a_rebuild_of_the_same_model_is_the_same_model_version(project):
    first = model_version_register(
        project=project, run=None, name="churn", artifact_digest="sha256:1", metrics={"auc": 0.9}
    )
    again = model_version_register(
        project=project, run=None, name="churn", artifact_digest="sha256:1", metrics={"auc": 0.9}
    )
    other = model_version_register(
        project=project, run=None, name="churn", artifact_digest="sha256:2"
    )
    separate = model_version_register(project=project, run=None, name="", artifact_digest="x")
    assert again == first
    assert (first.version, other.version) == (1, 2)
    assert (separate.name, separate.version) == ("model", 1)  # its own sequence
    assert first.metrics == {"auc": 0.9}
    assert AuditEvent.objects.filter(action="model_version.registered").count() == 3
