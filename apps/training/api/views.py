from pathlib import Path

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.decorators import action

from apps.accounts.api.viewsets import ProjectScopedViewSet

from .. import selectors
from .filters import DatasetFilter, DatasetVersionFilter
from .serializers import DatasetSerializer, DatasetVersionDetailSerializer, DatasetVersionSerializer


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Datasets of the projects you can see, each with its newest version."""

    serializer_class = DatasetSerializer
    filterset_class = DatasetFilter
    ordering_fields = ["name", "created"]

    def get_queryset(self):
        return selectors.dataset_list(user=self.request.user)

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return selectors.with_latest(list(page)) if page is not None else None

    def get_object(self):
        return selectors.with_latest([super().get_object()])[0]


class DatasetVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Versions of datasets (newest first): fingerprint, rows, columns and their types, size,
    the run and job that produced each, whether it is synthetic; the profile on one version."""

    filterset_class = DatasetVersionFilter
    ordering_fields = ["version", "created"]
    project_path = "dataset__project"

    def get_queryset(self):
        return selectors.dataset_version_list(user=self.request.user).order_by(
            "dataset_id", "-version"
        )

    def get_serializer_class(self):
        if self.action == "retrieve":
            return DatasetVersionDetailSerializer
        return DatasetVersionSerializer

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        """The version's file (needs the viewer role in its project)."""
        version = self.get_object()
        path = Path(version.path)
        if not path.is_file():
            raise Http404("The stored file of this version is gone.")
        return FileResponse(
            open(path, "rb"),  # noqa: SIM115
            as_attachment=True,
            filename=f"{version.dataset.name}-v{version.version}{path.suffix}",
        )
