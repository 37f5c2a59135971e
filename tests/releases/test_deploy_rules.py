"""The deploy rules of the orchestration: who may deploy where, freeze windows, blocked
releases, the per-environment lock, superseding, and a release moving dev → staging →
promotion → production with the real process deployer (a tiny bundle, no Docker)."""

import io
import json
import tarfile
import urllib.request
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from apps.core.exceptions import ConflictError, PermissionDeniedError
from apps.core.models import AuditEvent
from apps.pipelines import services as pipeline_services
from apps.pipelines.artifacts import bundle_store_put
from apps.projects.models import FreezeWindow
from apps.releases.choices import DeploymentStatus, PromotionStatus
from apps.releases.deployers.health import free_port
from apps.releases.deployers.process import ProcessDeployer
from apps.releases.models import Deployment, Promotion
from apps.releases.services import (
    deployment_execute,
    deployment_request,
    deployment_rollback,
    promotion_approve,
    release_advance,
    release_block,
    release_create,
)

pytestmark = pytest.mark.django_db

SERVER = b"""
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok", "release": os.environ["CONTROLPLANE_RELEASE"]})
        self.send_response(200 if os.environ.get("BROKEN") != "1" else 500)
        self.end_headers()
        self.wfile.write(body.encode())
    def log_message(self, *a):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def make_bundle(tmp_path, name: str) -> str:
    """A bundle with a stdlib HTTP service, kept in the bundle store; returns its digest."""
    import hashlib

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("server.py")
        info.size = len(SERVER)
        tar.addfile(info, io.BytesIO(SERVER))
        marker = name.encode()
        info = tarfile.TarInfo("RELEASE")
        info.size = len(marker)
        tar.addfile(info, io.BytesIO(marker))
    path = tmp_path / f"{name}.tar.gz"
    path.write_bytes(buf.getvalue())
    digest = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    bundle_store_put(path, digest)
    return digest


@pytest.fixture
def deploy_dir(settings, tmp_path):
    settings.CONTROLPLANE_DEPLOY_DIR = tmp_path / "deploy"
    yield settings.CONTROLPLANE_DEPLOY_DIR
    deployer = ProcessDeployer()
    for env in ("dev", "staging", "production"):
        deployer.stop(project="churn-model", environment=env)


@pytest.fixture
def envs(project):
    envs = {e.name: e for e in project.environments.all()}
    for env in envs.values():
        env.deployer = "process"
        env.service_port = free_port()
        env.health_check_timeout = 20
        env.save()
    return envs


def make_release(project, admin_user, tmp_path, version="v1"):
    run = pipeline_services.run_create(
        project=project, actor=admin_user, jobs=[{"name": "t", "script": ["true"]}]
    )
    run.spec = {"serve": {"command": "python server.py", "health": "/healthz", "port": 8080}}
    run.save(update_fields=["spec"])
    return release_create(
        project=project,
        version=version,
        commit_sha="abc1234" + version,
        actor=admin_user,
        pipeline_run=run,
        bundle_digest=make_bundle(tmp_path, version),
    )


def answer(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def freeze(env, reason="Black Friday"):
    return FreezeWindow.objects.create(
        environment=env, cron="* * * * *", duration=timedelta(days=1), reason=reason
    )


def test_who_may_deploy_where(envs, project, admin_user, member, tmp_path):
    release = make_release(project, admin_user, tmp_path)
    with pytest.raises(PermissionDeniedError):
        deployment_request(release=release, environment=envs["dev"], actor=member("viewer"))
    # Production needs approval: a developer may not deploy there at all, an approver only
    # through a promotion (or to roll back to what served before).
    with pytest.raises(PermissionDeniedError):
        deployment_request(
            release=release, environment=envs["production"], actor=member("developer")
        )
    approver = member("approver")
    with pytest.raises(ConflictError, match="need an approved promotion"):
        deployment_request(release=release, environment=envs["production"], actor=approver)
    with pytest.raises(ConflictError, match="never served"):
        deployment_rollback(environment=envs["production"], release=release, actor=approver)
    assert not Deployment.objects.exists()
    deployment = deployment_request(
        release=release, environment=envs["dev"], actor=member("developer", "dev2")
    )
    assert deployment.status == DeploymentStatus.PENDING
    assert AuditEvent.objects.filter(action="deployment.requested").count() == 1


def test_a_freeze_window_refuses_people_and_holds_automatic_deploys(
    envs, project, admin_user, member, tmp_path
):
    release = make_release(project, admin_user, tmp_path)
    freeze(envs["dev"])
    with pytest.raises(ConflictError, match="dev is frozen \\(Black Friday\\) until"):
        deployment_request(release=release, environment=envs["dev"], actor=member("developer"))
    assert not Deployment.objects.exists()
    release_advance(release=release)  # the pipeline's way in: held, not refused
    deployment = Deployment.objects.get()
    deployment = deployment_execute(deployment_id=deployment.pk)
    assert deployment.status == DeploymentStatus.PENDING
    assert "frozen (Black Friday)" in deployment.hold_reason
    assert "held: dev is frozen" in Deployment.objects.get().log


def test_a_blocked_release_is_refused_and_its_pending_deploys_fail(
    envs, project, admin_user, member, tmp_path
):
    release = make_release(project, admin_user, tmp_path)
    pending = deployment_request(release=release, environment=envs["dev"], actor=admin_user)
    release_block(release=release, actor=admin_user, reason="leaks PII")
    pending.refresh_from_db()
    assert pending.status == DeploymentStatus.FAILED
    assert "leaks PII" in pending.error_message
    with pytest.raises(ConflictError, match="blocked"):
        deployment_request(release=release, environment=envs["dev"], actor=admin_user)
    release_advance(release=release)
    assert Deployment.objects.count() == 1


def test_one_deployment_runs_per_environment(envs, project, admin_user, tmp_path):
    release = make_release(project, admin_user, tmp_path)
    running = Deployment.objects.create(
        release=release, environment=envs["dev"], status=DeploymentStatus.RUNNING
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Deployment.objects.create(
            release=release, environment=envs["dev"], status=DeploymentStatus.RUNNING
        )
    waiting = deployment_request(release=release, environment=envs["dev"], actor=admin_user)
    waiting = deployment_execute(deployment_id=waiting.pk)
    assert waiting.status == DeploymentStatus.PENDING
    assert waiting.hold_reason == f"Waiting for deployment #{running.pk} to finish."


def test_a_newer_pending_deployment_supersedes_an_older_one(envs, project, admin_user, tmp_path):
    v1 = make_release(project, admin_user, tmp_path, "v1")
    v2 = make_release(project, admin_user, tmp_path, "v2")
    older = deployment_request(release=v1, environment=envs["dev"], actor=admin_user)
    deployment_request(release=v2, environment=envs["dev"], actor=admin_user)
    older = deployment_execute(deployment_id=older.pk)
    assert older.status == DeploymentStatus.SUPERSEDED
    assert "v2" in older.error_message


def test_a_release_moves_through_the_environments_with_the_process_deployer(
    deploy_dir, envs, project, admin_user, member, tmp_path
):
    v1 = make_release(project, admin_user, tmp_path, "v1")
    release_advance(release=v1)
    dev = Deployment.objects.get(environment=envs["dev"])
    dev = deployment_execute(deployment_id=dev.pk)
    assert dev.status == DeploymentStatus.SUCCEEDED, dev.log
    assert answer(envs["dev"].service_port)["release"] == "v1"
    # dev deploys automatically, so does staging; production asks for an approval.
    staging = Deployment.objects.get(environment=envs["staging"])
    assert deployment_execute(deployment_id=staging.pk).status == DeploymentStatus.SUCCEEDED
    promotion = Promotion.objects.get(environment=envs["production"])
    assert promotion.status == PromotionStatus.PENDING
    assert not Deployment.objects.filter(environment=envs["production"]).exists()
    promotion = promotion_approve(promotion=promotion, user=member("approver"))
    assert promotion.status == PromotionStatus.DEPLOYING
    prod = deployment_execute(deployment_id=promotion.deployment_id)
    assert prod.status == DeploymentStatus.SUCCEEDED, prod.log
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.DEPLOYED
    assert answer(envs["production"].service_port)["release"] == "v1"
    assert "v1 serves production" in prod.log

    # v2 reaches dev; roll dev back to v1 (the UI asks to confirm first).
    v2 = make_release(project, admin_user, tmp_path, "v2")
    release_advance(release=v2)
    d2 = Deployment.objects.get(environment=envs["dev"], release=v2)
    assert deployment_execute(deployment_id=d2.pk).status == DeploymentStatus.SUCCEEDED
    assert answer(envs["dev"].service_port)["release"] == "v2"
    back = deployment_rollback(
        environment=envs["dev"], release=v1, actor=member("developer"), reason="v2 is slow"
    )
    back = deployment_execute(deployment_id=back.pk)
    assert back.status == DeploymentStatus.SUCCEEDED and back.is_rollback
    assert answer(envs["dev"].service_port)["release"] == "v1"
    # A rollback does not push the old release on to staging again.
    assert Deployment.objects.filter(environment=envs["staging"], release=v1).count() == 1


def test_one_reminder_before_an_approval_expires(envs, project, admin_user, tmp_path, settings):
    from django.utils import timezone

    from apps.releases.services import promotion_remind_due, promotion_request
    from apps.releases.signals import promotion_reminder

    settings.APPROVAL_REMINDER_BEFORE = timedelta(hours=2)
    release = make_release(project, admin_user, tmp_path)
    promotion = promotion_request(release=release, environment=envs["production"], actor="ci")
    reminded = []

    def receiver(sender, promotion, **kwargs):
        reminded.append(promotion.pk)

    promotion_reminder.connect(receiver)
    try:
        assert promotion_remind_due() == 0  # 72 h left
        Promotion.objects.filter(pk=promotion.pk).update(
            expires_at=timezone.now() + timedelta(minutes=90)
        )
        assert promotion_remind_due() == 1
        assert promotion_remind_due() == 0  # once
    finally:
        promotion_reminder.disconnect(receiver)
    assert reminded == [promotion.pk]
    assert Promotion.objects.get(pk=promotion.pk).reminder_sent_at is not None


def test_the_spec_creates_missing_environments_and_never_loosens_existing_ones(project, admin_user):
    from apps.projects.services import environments_from_spec

    spec = {
        "environments": {
            "dev": {"auto_deploy": True},
            "production": {"auto_deploy": True, "required_approvals": 0},  # a commit's attempt
            "canary": {"auto_deploy": False, "required_approvals": 2, "approval_ttl_hours": 4},
        }
    }
    created = environments_from_spec(project=project, spec=spec, actor="pipeline")
    assert [e.name for e in created] == ["canary"]
    canary = created[0]
    assert canary.order > project.environments.get(name="production").order
    assert (canary.required_approvals, canary.approval_ttl) == (2, timedelta(hours=4))
    production = project.environments.get(name="production")
    assert not production.auto_deploy and production.required_approvals == 1
    assert environments_from_spec(project=project, spec=spec, actor="pipeline") == []


def test_the_deployment_page_shows_its_log_and_polls_while_it_runs(
    deploy_dir, envs, project, admin_user, member, client, tmp_path
):
    release = make_release(project, admin_user, tmp_path)
    deployment = deployment_request(release=release, environment=envs["dev"], actor=admin_user)
    client.force_login(member("viewer"))
    page = client.get(deployment.get_absolute_url()).content.decode()
    assert "Waiting for a worker" in page and 'hx-trigger="every 1s"' in page
    deployment = deployment_execute(deployment_id=deployment.pk)
    assert deployment.status == DeploymentStatus.SUCCEEDED
    partial = client.get(deployment.get_absolute_url(), headers={"HX-Request": "true"})
    body = partial.content.decode()
    assert "<html" not in body  # only the card
    assert "deploying v1 to dev with process" in body and "v1 serves dev" in body
    assert "hx-trigger" not in body  # over: no more polling
    client.force_login(member("viewer", "outsider-not-member"))
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="stranger"))
    assert client.get(deployment.get_absolute_url()).status_code == 404
