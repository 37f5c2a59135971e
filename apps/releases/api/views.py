from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.viewsets import ProjectScopedViewSet
from apps.accounts.choices import Role
from apps.projects.api.views import EnvironmentViewSet as ProjectEnvironmentViewSet

from .. import selectors, services
from ..choices import ApprovalChannel
from .filters import DeploymentFilter, PromotionFilter, ReleaseFilter
from .serializers import (
    BlockSerializer,
    DecisionSerializer,
    DeploymentSerializer,
    DeploySerializer,
    EnvironmentWithServingSerializer,
    PromotionSerializer,
    ReleaseSerializer,
    RollbackSerializer,
    ServiceErrorSerializer,
)

# Who may deploy or roll back where is the service's rule (developer; the approver role where
# deploys need approval); the viewset only keeps viewers out.
DEPLOY_REFUSALS = {
    400: OpenApiResponse(description="Invalid body."),
    403: OpenApiResponse(ServiceErrorSerializer, description="Your role does not allow it."),
    409: OpenApiResponse(
        ServiceErrorSerializer,
        description="Refused as things stand: release blocked, environment frozen, approval "
        "needed, or the release never served here.",
    ),
}


class ReleaseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Immutable releases. Blocking one (approver role) stops it in every environment."""

    serializer_class = ReleaseSerializer
    filterset_class = ReleaseFilter
    ordering_fields = ["created", "version"]
    action_roles = {"block": Role.APPROVER, "deploy": Role.DEVELOPER}

    def get_queryset(self):
        return selectors.release_list(user=self.request.user)

    @extend_schema(
        request=DeploySerializer, responses={202: DeploymentSerializer, **DEPLOY_REFUSALS}
    )
    @action(detail=True, methods=["post"])
    def deploy(self, request, pk=None):
        """Deploy this release to an environment that deploys without approval (one that needs
        approval takes a promotion). A worker carries it out: follow the deployment's status."""
        release = self.get_object()
        body = DeploySerializer(data=request.data, release=release)
        body.is_valid(raise_exception=True)
        deployment = services.deployment_request(
            release=release,
            environment=body.validated_data["environment"],
            actor=request.user,
            reason=body.validated_data["reason"],
        )
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=BlockSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def block(self, request, pk=None):
        body = BlockSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        release = services.release_block(
            release=self.get_object(), actor=request.user, reason=body.validated_data["reason"]
        )
        return Response(ReleaseSerializer(release).data)


class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    serializer_class = DeploymentSerializer
    filterset_class = DeploymentFilter
    ordering_fields = ["created", "finished_at"]
    project_path = "environment__project"

    def get_queryset(self):
        return selectors.deployment_list(user=self.request.user)


class PromotionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Promotion requests. Approve / reject need the environment's approver role; the rules
    (N approvals, no self-approval, expiry) are checked by the same service as in the UI."""

    serializer_class = PromotionSerializer
    filterset_class = PromotionFilter
    ordering_fields = ["created", "expires_at"]
    project_path = "environment__project"
    # The service checks the environment's own approver role (it may demand admin).
    action_roles = {"approve": Role.APPROVER, "reject": Role.APPROVER}

    def get_queryset(self):
        return selectors.promotion_list(user=self.request.user)

    def _decided(self, request, decide) -> Response:
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        promotion = decide(
            promotion=self.get_object(),
            user=request.user,
            comment=body.validated_data["comment"],
            channel=ApprovalChannel.API,
        )
        promotion = selectors.promotion_list(user=request.user).get(pk=promotion.pk)
        return Response(PromotionSerializer(promotion).data)

    @extend_schema(request=DecisionSerializer, responses={200: PromotionSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Approve (the comment is optional); the N-th approval requests the deployment."""
        return self._decided(request, services.promotion_approve)

    @extend_schema(
        request=DecisionSerializer,
        responses={
            200: PromotionSerializer,
            400: OpenApiResponse(ServiceErrorSerializer, description="No comment: say why."),
        },
    )
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        """Reject; the comment (why) is required."""
        return self._decided(request, services.promotion_reject)


class EnvironmentViewSet(ProjectEnvironmentViewSet):
    """A project's environments in promotion order, each with the release serving it now.
    Writing needs the project's admin role; rolling back is checked by the deploy service."""

    serializer_class = EnvironmentWithServingSerializer
    action_roles = {"rollback": Role.DEVELOPER}

    def get_queryset(self):
        return selectors.environment_list_with_serving(user=self.request.user).prefetch_related(
            "freeze_windows"
        )

    @extend_schema(
        request=RollbackSerializer, responses={202: DeploymentSerializer, **DEPLOY_REFUSALS}
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        """Redeploy a release that served this environment before. A worker carries it out."""
        environment = self.get_object()
        body = RollbackSerializer(data=request.data, environment=environment)
        body.is_valid(raise_exception=True)
        deployment = services.deployment_rollback(
            environment=environment,
            release=body.validated_data["release"],
            actor=request.user,
            reason=body.validated_data["reason"],
        )
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)


class ModelVersionLineageView(APIView):
    """``GET /api/v1/model-versions/{id}/lineage/``: commit → dataset versions → run/job →
    model → gate verdict → releases and their images → the environments it serves in."""

    @extend_schema(
        responses={200: OpenApiResponse(description="The lineage."), 404: OpenApiResponse()}
    )
    def get(self, request, pk: int):
        from apps.training import selectors as training_selectors

        from ..lineage import model_lineage

        mv = get_object_or_404(
            training_selectors.model_version_detail(
                training_selectors.model_version_list(user=request.user)
            ),
            pk=pk,
        )
        return Response(model_lineage(model_version=mv))
