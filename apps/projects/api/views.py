from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.viewsets import ProjectScopedViewSet, body_slug
from apps.accounts.choices import Role

from .. import selectors, services
from ..models import Project, Variable
from ..spec import load_schema
from .filters import EnvironmentFilter, ProjectFilter
from .serializers import (
    EnvironmentSerializer,
    FreezeWindowSerializer,
    ProjectSerializer,
    VariableSerializer,
)


def _validated(service, **kwargs):
    """Call a write service; a model validation error becomes a 400 naming the fields."""
    try:
        return service(**kwargs)
    except DjangoValidationError as exc:
        raise ValidationError(exc.message_dict) from None


class ProjectViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    ProjectScopedViewSet,
):
    """Projects you are a member of. Creating one needs the `projects.add_project` permission
    (staff); you become its admin. Changing one needs the admin role."""

    serializer_class = ProjectSerializer
    filterset_class = ProjectFilter
    ordering_fields = ["name", "created"]
    lookup_field = "slug"
    project_path = ""
    write_role = Role.ADMIN

    def get_queryset(self):
        return selectors.project_list(user=self.request.user).prefetch_related("environments")

    def get_permission_project_id(self, obj) -> int:
        return obj.pk

    def perform_create(self, serializer):
        if not self.request.user.has_perm("projects.add_project"):
            raise PermissionDenied("Creating projects needs the projects.add_project permission.")
        data = dict(serializer.validated_data)
        serializer.instance = services.project_create(actor=self.request.user, **data)

    def perform_update(self, serializer):
        serializer.instance = services.project_update(
            project=serializer.instance, actor=self.request.user, **serializer.validated_data
        )


class EnvironmentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    ProjectScopedViewSet,
):
    """A project's environments in promotion order. Writing needs the project's admin role."""

    serializer_class = EnvironmentSerializer
    filterset_class = EnvironmentFilter
    ordering_fields = ["order", "name"]
    write_role = Role.ADMIN

    def get_queryset(self):
        return selectors.environment_list(user=self.request.user).prefetch_related("freeze_windows")

    def get_create_project_id(self, request):
        return Project.objects.filter(slug=body_slug(request)).values_list("pk", flat=True).first()

    def perform_create(self, serializer):
        serializer.instance = _validated(
            services.environment_create, actor=self.request.user, **serializer.validated_data
        )

    @extend_schema(request=FreezeWindowSerializer, responses={201: FreezeWindowSerializer})
    @action(detail=True, methods=["post"], url_path="freeze-windows")
    def add_freeze_window(self, request, pk=None):
        """Hold deploys to this environment while a window is open: from each ``cron`` time
        for ``duration`` (e.g. ``"0 17 * * 5"`` for ``"2 15:00:00"``: Friday 17:00 to Monday
        08:00). Needs the project's admin role."""
        environment = self.get_object()
        body = FreezeWindowSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        window = _validated(
            services.freeze_window_add,
            environment=environment,
            actor=request.user,
            **body.validated_data,
        )
        return Response(FreezeWindowSerializer(window).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(
        detail=True,
        methods=["delete"],
        url_path=r"freeze-windows/(?P<window_id>\d+)",
        url_name="remove-freeze-window",
    )
    def remove_freeze_window(self, request, pk=None, window_id=None):
        environment = self.get_object()
        window = get_object_or_404(environment.freeze_windows, pk=window_id)
        services.freeze_window_remove(window=window, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def perform_update(self, serializer):
        serializer.instance = _validated(
            services.environment_update,
            environment=serializer.instance,
            actor=self.request.user,
            **serializer.validated_data,
        )


class VariableViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    ProjectScopedViewSet,
):
    """Variables handed to a project's jobs and deployments (docs/secrets.md). Reading needs
    the viewer role (a secret's value is never shown); writing needs the admin role.
    ``protected``: only runs of protected refs and deployments get it; ``environment``: only
    that environment's runs and deployments."""

    serializer_class = VariableSerializer
    ordering_fields = ["key", "created"]
    write_role = Role.ADMIN

    def get_queryset(self):
        return selectors.variable_list(user=self.request.user)

    def get_create_project_id(self, request):
        return Project.objects.filter(slug=body_slug(request)).values_list("pk", flat=True).first()

    def perform_create(self, serializer):
        serializer.instance = _validated(
            services.variable_set, actor=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance: Variable):
        services.variable_delete(variable=instance, actor=self.request.user)


class PipelineSpecSchemaView(APIView):
    """The JSON Schema of `.controlplane.yml` (version 1), for editors and CI linters."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(load_schema())
