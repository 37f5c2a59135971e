"""The Django admin shows releases, deployments, promotions, approvals and audit rows but
changes none of them, even for a superuser: they change only through their services."""

import pytest
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.releases.models import Approval, Deployment, Promotion, Release
from apps.releases.services import promotion_approve, promotion_request, release_create
from apps.training.models import ModelVersion
from apps.training.services import model_version_register

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(project, admin_user, member):
    production = project.environments.get(name="production")
    model = model_version_register(
        project=project, run=None, name="churn", artifact_digest="sha256:aa", metrics={"auc": 0.9}
    )
    release = release_create(
        project=project, version="v1", commit_sha="abc1234", actor=admin_user, model_version=model
    )
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    promotion = promotion_approve(promotion=promotion, user=member("approver"), comment="ok")
    return {
        Release: release,
        Promotion: promotion,
        Deployment: promotion.deployment,
        Approval: promotion.approvals.get(),
        AuditEvent: AuditEvent.objects.filter(action="promotion.approve").get(),
        ModelVersion: model,
    }


def _url(model, view, *args):
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)


MODELS = [Release, Promotion, Deployment, Approval, AuditEvent, ModelVersion]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_superuser_sees_the_rows_but_cannot_add_change_or_delete(client, admin_user, rows, model):
    client.force_login(admin_user)
    obj = rows[model]
    listing = client.get(_url(model, "changelist"))
    assert listing.status_code == 200
    assert _url(model, "add") not in listing.content.decode()  # no "Add" button
    assert client.get(_url(model, "add")).status_code == 403
    assert client.post(_url(model, "add"), {}).status_code == 403

    form = client.get(_url(model, "change", obj.pk))
    assert form.status_code == 200
    page = form.content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert _url(model, "delete", obj.pk) not in page

    before = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
    fields = {name: "changed" for name in before}
    assert client.post(_url(model, "change", obj.pk), fields).status_code == 403
    assert client.post(_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    obj = model.objects.get(pk=obj.pk)
    assert {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields} == before


def test_the_delete_action_is_not_offered(client, admin_user, rows):
    client.force_login(admin_user)
    for model in MODELS:
        page = client.get(_url(model, "changelist")).content.decode()
        assert "delete_selected" not in page
        response = client.post(
            _url(model, "changelist"),
            {"action": "delete_selected", "_selected_action": [rows[model].pk], "post": "yes"},
        )
        assert response.status_code in (200, 302, 403)
        assert model.objects.filter(pk=rows[model].pk).exists()
