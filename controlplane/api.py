"""API v1: one router for every resource."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from apps.core.api.views import WorkerPingView
from apps.monitoring.api.alerts import AlertViewSet, SilenceViewSet
from apps.monitoring.api.ingest import IngestTokenViewSet, LabelsView, ObservationsView
from apps.monitoring.prometheus import targets_view
from apps.notifications.api.views import (
    NotificationDeliveryViewSet,
    NotificationTargetViewSet,
    SlackIdentityView,
)
from apps.pipelines.api.views import JobViewSet, PipelineRunStartView, RunViewSet
from apps.projects.api.views import PipelineSpecSchemaView, ProjectViewSet, VariableViewSet
from apps.releases.api.views import (
    DeploymentViewSet,
    EnvironmentViewSet,
    ModelVersionLineageView,
    PromotionViewSet,
    ReleaseViewSet,
)
from apps.training.api.views import DatasetVersionViewSet, DatasetViewSet, ModelVersionViewSet
from apps.webhooks.api.views import WebhookDeliveryViewSet

router = DefaultRouter()
router.register("projects", ProjectViewSet, basename="project")
router.register("environments", EnvironmentViewSet, basename="environment")
router.register("variables", VariableViewSet, basename="variable")
router.register("runs", RunViewSet, basename="run")
router.register("jobs", JobViewSet, basename="job")
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("dataset-versions", DatasetVersionViewSet, basename="dataset-version")
router.register("releases", ReleaseViewSet, basename="release")
router.register("deployments", DeploymentViewSet, basename="deployment")
router.register("promotions", PromotionViewSet, basename="promotion")
router.register("model-versions", ModelVersionViewSet, basename="model-version")
router.register("webhook-deliveries", WebhookDeliveryViewSet, basename="webhook-delivery")
router.register("alerts", AlertViewSet, basename="alert")
router.register("silences", SilenceViewSet, basename="silence")
router.register("notification-targets", NotificationTargetViewSet, basename="notification-target")
router.register("ingest-tokens", IngestTokenViewSet, basename="ingest-token")
router.register(
    "notification-deliveries", NotificationDeliveryViewSet, basename="notification-delivery"
)

urlpatterns = [
    path("system/ping/", WorkerPingView.as_view(), name="worker-ping"),
    path("monitoring/targets/", targets_view, name="monitoring-targets"),
    path("me/slack-identity/", SlackIdentityView.as_view(), name="slack-identity"),
    path(
        "pipeline-spec/schema.json", PipelineSpecSchemaView.as_view(), name="pipeline-spec-schema"
    ),
    path(
        "model-versions/<int:pk>/lineage/",
        ModelVersionLineageView.as_view(),
        name="model-version-lineage",
    ),
    path(
        "projects/<str:project>/pipelines/<str:name>/runs/",
        PipelineRunStartView.as_view(),
        name="pipeline-runs",
    ),
    path(
        "environments/<int:pk>/observations/",
        ObservationsView.as_view(),
        name="environment-observations",
    ),
    path("environments/<int:pk>/labels/", LabelsView.as_view(), name="environment-labels"),
    path("", include(router.urls)),
]
