"""The model registry: metrics split from params and tags, aliases moved only by deployments
(audited), compare, the whole lineage of a version serving in production, the API's
permissions and the model file download."""

import hashlib
import io
import tarfile

import pytest

from apps.core.models import AuditEvent
from apps.pipelines.artifacts import bundle_store_put
from apps.releases.selectors import metrics_comparison, parameters_comparison
from apps.releases.services import deployment_execute, deployment_request
from apps.training.metricsfile import split_metrics
from apps.training.models import MetricPoint, ModelAlias
from apps.training.services import metric_points_record, model_version_register
from tests.releases.test_deploy_rules import deploy_dir, envs  # noqa: F401 - fixtures

from .registry_chain import model_chain, train_run

pytestmark = pytest.mark.django_db


def test_a_flat_metrics_file_keeps_only_scores_among_the_metrics():
    split = split_metrics(
        {
            "f1": 0.83,
            "accuracy": 0.9,
            "n_rows": 5000,
            "seed": 42,
            "random_state": 1,
            "sklearn_version": "1.5.2",
            "dataset_hash": "ab12",
            "train_fingerprint": "cd34",
            "model_type": "gbm",
            "calibrated": True,
        }
    )
    assert split.metrics == {"f1": 0.83, "accuracy": 0.9}
    assert split.params == {
        "n_rows": 5000,
        "seed": 42,
        "random_state": 1,
        "model_type": "gbm",
        "calibrated": True,
    }
    assert split.tags == {
        "sklearn_version": "1.5.2",
        "dataset_hash": "ab12",
        "train_fingerprint": "cd34",
    }


def test_a_sectioned_metrics_file_is_split_by_its_sections_and_the_rule():
    split = split_metrics(
        {
            "metrics": {"f1": 0.8, "seed": 3},  # a seed in the metrics still moves out
            "params": {"learning_rate": 0.1},
            "tags": {"team": "risk"},
        }
    )
    assert split.metrics == {"f1": 0.8}
    assert split.params == {"seed": 3, "learning_rate": 0.1}
    assert split.tags == {"team": "risk"}


def test_registration_splits_and_the_promotion_page_lists_only_scores(project, admin_user):
    from apps.releases.services import release_create

    mv = model_version_register(
        project=project,
        run=None,
        name="churn",
        artifact_digest="sha256:1",
        metrics={"f1": 0.8, "seed": 42, "sklearn_version": "1.5.2", "dataset_hash": "ab"},
    )
    assert mv.metrics == {"f1": 0.8}
    assert mv.params == {"seed": 42}
    assert mv.tags == {"sklearn_version": "1.5.2", "dataset_hash": "ab"}
    # A release whose evidence still holds the flat file (as builds record it).
    release = release_create(
        project=project,
        version="r1",
        commit_sha="abc",
        actor=admin_user,
        model_version=mv,
        evidence={"model": {"metrics": {"f1": 0.8, "seed": 42, "sklearn_version": "1.5.2"}}},
    )
    metrics = [m["name"] for m in metrics_comparison(release=release, production=None)]
    params = [p["name"] for p in parameters_comparison(release=release, production=None)]
    assert metrics == ["f1"]
    assert sorted(params) == ["dataset_hash", "seed", "sklearn_version"]


def test_points_logged_before_and_after_registration_belong_to_the_version(project, admin_user):
    run, job = train_run(project, admin_user)
    metric_points_record(
        job_id=job.pk, points=[{"key": "loss", "step": s, "value": 1 / (s + 1)} for s in range(5)]
    )
    mv = model_version_register(
        project=project, run=run, job=job, name="churn", artifact_digest="sha256:x"
    )
    metric_points_record(job_id=job.pk, points=[{"key": "loss", "step": 5, "value": 0.1}])
    assert MetricPoint.objects.filter(model_version=mv).count() == 6
    assert not MetricPoint.objects.filter(model_version=None).exists()
    event = AuditEvent.objects.get(action="model_version.registered", object_id=str(mv.pk))
    assert event.data["series_points"] == 5


def test_a_deployment_moves_the_alias_and_the_environment_commit_audited(
    project,
    admin_user,
    tmp_path,
    envs,  # noqa: F811
    deploy_dir,  # noqa: F811
):
    mv, release, _ = model_chain(project, admin_user, tmp_path)
    assert not ModelAlias.objects.exists()  # registering moves nothing
    dev = envs["dev"]
    deployment = deployment_request(release=release, environment=dev, actor=admin_user)
    deployment = deployment_execute(deployment_id=deployment.pk)
    assert deployment.status == "succeeded", deployment.error_message
    alias = ModelAlias.objects.get(environment=dev)
    assert (alias.model_name, alias.model_version) == ("churn", mv)
    dev.refresh_from_db()
    assert dev.pipeline_commit_sha == release.commit_sha
    moved = AuditEvent.objects.get(action="model_alias.moved")
    assert moved.actor_label == "deployer"
    assert moved.data["to_version_id"] == mv.pk and moved.data["from_version_id"] is None
    assert AuditEvent.objects.filter(action="environment.pipeline_commit_set").count() == 1

    # The next model replaces it there; the audit row says which it replaced.
    mv2, release2, _ = model_chain(project, admin_user, tmp_path, version="r2-model")
    d2 = deployment_request(release=release2, environment=dev, actor=admin_user)
    assert deployment_execute(deployment_id=d2.pk).status == "succeeded"
    alias.refresh_from_db()
    assert alias.model_version == mv2
    last = AuditEvent.objects.filter(action="model_alias.moved").latest("pk")
    assert (last.data["from_version_id"], last.data["to_version_id"]) == (mv.pk, mv2.pk)


def test_a_failed_deployment_moves_nothing(
    project,
    admin_user,
    tmp_path,
    envs,  # noqa: F811
    deploy_dir,  # noqa: F811
):
    _mv, release, _ = model_chain(project, admin_user, tmp_path)
    dev = envs["dev"]
    from apps.projects.services import variable_set

    # The service answers 500: the health gate fails and the deployment with it.
    variable_set(project=project, key="BROKEN", value="1", actor=admin_user)
    deployment = deployment_request(release=release, environment=dev, actor=admin_user)
    assert deployment_execute(deployment_id=deployment.pk).status != "succeeded"
    assert not ModelAlias.objects.exists()
    dev.refresh_from_db()
    assert dev.pipeline_commit_sha == ""


def test_compare_marks_the_best_of_each_metric(project, admin_user, member, client):
    a = model_version_register(
        project=project,
        run=None,
        name="churn",
        artifact_digest="sha256:a",
        metrics={"f1": 0.80, "loss": 0.30, "latency_ms": 12},
    )
    b = model_version_register(
        project=project,
        run=None,
        name="churn",
        artifact_digest="sha256:b",
        metrics={"f1": 0.85, "loss": 0.35, "latency_ms": 9},
    )
    client.force_login(member("viewer"))
    page = client.get(f"/p/{project.slug}/models/compare/?ids={a.pk},{b.pk}&metric=f1")
    assert page.status_code == 200
    rows = {r["name"]: r for r in page.context["comparison"].rows}
    assert [c["best"] for c in rows["f1"]["cells"]] == [False, True]  # higher is better
    assert [c["best"] for c in rows["loss"]["cells"]] == [True, False]  # lower is better
    assert [c["best"] for c in rows["latency_ms"]["cells"]] == [False, True]
    html = page.content.decode()
    assert "<strong>0.85</strong>" in html and "<svg" in html and "v2" in html


def test_lineage_returns_the_whole_chain_of_a_version_serving_in_production(
    project,
    admin_user,
    tmp_path,
    member,
    api,
    envs,  # noqa: F811
    deploy_dir,  # noqa: F811
):
    mv, release, datasets = model_chain(project, admin_user, tmp_path)
    production = envs["production"]
    from apps.releases.services import promotion_approve, promotion_request

    production.required_approvals = 1
    production.save(update_fields=["required_approvals"])
    promotion = promotion_request(release=release, environment=production, actor="pipeline")
    promotion = promotion_approve(
        promotion=promotion, user=member("approver", "lead"), comment="ok"
    )
    promotion.refresh_from_db()
    deployment = deployment_execute(deployment_id=promotion.deployment_id)
    assert deployment.status == "succeeded", deployment.error_message

    body = api(member("viewer")).get(f"/api/v1/model-versions/{mv.pk}/lineage/").json()
    assert body["commit"]["sha"] == mv.commit_sha
    trained = body["datasets"]["trained_on"][0]
    assert (trained["dataset"], trained["fingerprint"]) == (
        "features",
        datasets["features"].fingerprint,
    )
    assert trained["run"] == datasets["features"].run.number and trained["job"] == "prepare"
    assert body["datasets"]["evaluated_on"][0]["dataset"] == "eval"
    assert body["run"]["number"] == mv.job.run.number and body["job"]["name"] == "train"
    assert body["model"]["version"] == mv.version
    assert body["gate"]["passed"] is True and body["gate"]["metric"] == "f1"
    assert body["releases"][0]["version"] == release.version
    assert body["releases"][0]["image_ref"] == release.image_ref
    assert body["releases"][0]["deployed_to"] == ["production"]
    assert [s["environment"] for s in body["serving"]] == ["production"]

    page = api(member("viewer", "v2")).get(f"/api/v1/model-versions/{mv.pk}/lineage/")
    assert page.status_code == 200
    from tests.factories import UserFactory

    stranger = UserFactory(username="stranger")
    assert api(stranger).get(f"/api/v1/model-versions/{mv.pk}/lineage/").status_code == 404


def test_the_api_reads_for_viewers_and_writes_for_nobody(project, admin_user, member, api):
    mv = model_version_register(
        project=project, run=None, name="churn", artifact_digest="sha256:1", metrics={"f1": 0.8}
    )
    model_version_register(
        project=project, run=None, name="other", artifact_digest="sha256:2", metrics={"f1": 0.7}
    )
    viewer = api(member("viewer"))
    listing = viewer.get("/api/v1/model-versions/?name=churn").json()
    assert [r["id"] for r in listing["results"]] == [mv.pk]
    assert viewer.get(f"/api/v1/model-versions/{mv.pk}/").json()["metrics"] == {"f1": 0.8}
    lead = api(member("admin", "boss"))
    for method in ("post", "put", "patch", "delete"):
        url = "/api/v1/model-versions/" + ("" if method == "post" else f"{mv.pk}/")
        assert getattr(lead, method)(url, {}, format="json").status_code == 405
    compare = viewer.get(f"/api/v1/model-versions/compare/?ids={mv.pk}")
    assert compare.status_code == 400


def _bundle_with_model(tmp_path, content: bytes) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("artifacts/model.joblib")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    path = tmp_path / "b.tar.gz"
    path.write_bytes(buf.getvalue())
    digest = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    bundle_store_put(path, digest)
    return digest


def test_the_model_file_downloads_for_members_only(project, admin_user, member, api, tmp_path):
    from tests.factories import UserFactory

    run, job = train_run(project, admin_user, "build")
    content = b"pretend-joblib-bytes"
    job.result = {"bundle_digest": _bundle_with_model(tmp_path, content)}
    job.save(update_fields=["result"])
    mv = model_version_register(
        project=project,
        run=run,
        job=job,
        name="churn",
        artifact_uri="bundle:artifacts/model.joblib",
        artifact_digest="sha256:" + hashlib.sha256(content).hexdigest(),
    )
    got = api(member("viewer")).get(f"/api/v1/model-versions/{mv.pk}/artifact/")
    assert got.status_code == 200 and b"".join(got.streaming_content) == content
    stranger = api(UserFactory(username="stranger"))
    assert stranger.get(f"/api/v1/model-versions/{mv.pk}/artifact/").status_code == 404
    assert api().get(f"/api/v1/model-versions/{mv.pk}/artifact/").status_code in (401, 403)
