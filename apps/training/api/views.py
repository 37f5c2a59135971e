from pathlib import Path

from django.db.models import Prefetch
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from apps.accounts.api.viewsets import ProjectScopedViewSet

from .. import selectors
from ..models import ModelAlias
from ..views import artifact_response
from .filters import DatasetFilter, DatasetVersionFilter, ModelVersionFilter
from .serializers import (
    CompareSerializer,
    DatasetSerializer,
    DatasetVersionDetailSerializer,
    DatasetVersionSerializer,
    ModelVersionDetailSerializer,
    ModelVersionSerializer,
)


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

    @extend_schema(
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="A CSV version."),
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="A Parquet version."
            ),
        }
    )
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


class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """The model registry, read-only: versions are registered by the jobs that train them and
    aliases moved by deployments, never through the API."""

    serializer_class = ModelVersionSerializer
    filterset_class = ModelVersionFilter
    ordering_fields = ["created", "version"]

    def get_queryset(self):
        qs = selectors.model_version_list(user=self.request.user).order_by("-pk")
        aliases = Prefetch("aliases", queryset=ModelAlias.objects.select_related("environment"))
        if self.action == "retrieve":
            return selectors.model_version_detail(qs)
        return qs.prefetch_related(aliases)

    def get_serializer_class(self):
        if self.action == "retrieve":
            return ModelVersionDetailSerializer
        return super().get_serializer_class()

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "ids", str, required=True, description="Two or more version ids, comma-separated."
            )
        ],
        responses={200: CompareSerializer, 400: OpenApiResponse(description="Fewer than 2.")},
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def compare(self, request):
        """Metrics side by side, each row's best marked (lowest for losses, errors, latencies
        and sizes, else highest)."""
        raw = ",".join(request.query_params.getlist("ids"))
        ids = [int(p) for p in raw.split(",") if p.strip().isdigit()][: selectors.COMPARE_MAX]
        by_id = {v.pk: v for v in self.get_queryset().filter(pk__in=ids)}
        versions = [by_id[i] for i in dict.fromkeys(ids) if i in by_id]
        if len(versions) < 2:
            raise ValidationError({"ids": "Give two or more model versions you can see."})
        comparison = selectors.compare(versions=versions)
        return Response(CompareSerializer(comparison).data)

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The model file (its type guessed from its name)."
            ),
            (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY),
            404: OpenApiResponse(description="Not visible to you, or the file is not kept."),
        }
    )
    @action(detail=True, methods=["get"])
    def artifact(self, request, pk=None):
        """Download the model file (members of the project only)."""
        return artifact_response(self.get_object())
