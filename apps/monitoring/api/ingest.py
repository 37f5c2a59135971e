"""The ingest endpoints deployed services post to, and ingest-token management (project
admins). docs/monitoring-ingest.md describes the shapes, limits and answers."""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.viewsets import ProjectScopedViewSet
from apps.accounts.choices import Role
from apps.accounts.models import Membership
from apps.accounts.permissions import has_role, restrict_to_visible
from apps.projects.models import Environment

from ..authentication import IngestPermission
from ..ingest import BodyTooLarge, IngestError, decode_body, parse_labels, parse_observations
from ..models import IngestToken
from ..services.ingest import (
    expected_for,
    ingest_token_create,
    ingest_token_revoke,
    labels_record,
    observations_record,
)


def read_body(request) -> bytes:
    """The raw body, at most ``INGEST_MAX_BODY_BYTES`` (read past Django's small in-memory
    limit on purpose: a batch is large), then un-gzipped up to ``INGEST_MAX_DECODED_BYTES``."""
    limit = settings.INGEST_MAX_BODY_BYTES
    http = request._request
    try:
        length = int(http.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise BodyTooLarge(f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    while True:
        chunk = http.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return decode_body(
        b"".join(chunks),
        http.META.get("HTTP_CONTENT_ENCODING", ""),
        max_bytes=settings.INGEST_MAX_DECODED_BYTES,
    )


class _IngestView(APIView):
    accepts_ingest_token = True
    permission_classes = [IngestPermission]

    def get_authenticate_header(self, request):
        return None  # refused credentials are 403 here, never 401

    def get_environment(self) -> Environment:
        if not hasattr(self, "_environment"):
            environment = (
                Environment.objects.select_related("project").filter(pk=self.kwargs["pk"]).first()
            )
            if environment is None:
                if isinstance(self.request.auth, IngestToken):
                    raise PermissionDenied("This token cannot post to that environment.")
                raise NotFound("No such environment.")
            self._environment = environment
        return self._environment

    def handle_exception(self, exc):
        if isinstance(exc, IngestError):
            return Response(exc.as_dict(), status=status.HTTP_400_BAD_REQUEST)
        if isinstance(exc, BodyTooLarge):
            return Response(
                {"detail": str(exc), "code": "too_large"},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        return super().handle_exception(exc)


class ObservationsView(_IngestView):
    """Post a batch of observations (``rows``, ``columns`` or NDJSON; gzip accepted). The
    whole batch is stored or, on the first problem, none of it (400 naming row and column)."""

    @extend_schema(
        request={"application/json": dict, "application/x-ndjson": str},
        parameters=[OpenApiParameter("model_version", int, required=False)],
        responses={201: dict, 400: dict, 403: dict, 413: dict},
    )
    def post(self, request, pk: int):
        environment = self.get_environment()
        batch = parse_observations(
            read_body(request),
            content_type=request.META.get("CONTENT_TYPE", ""),
            expected=lambda mv: expected_for(environment=environment, model_version_id=mv),
            model_version=request.query_params.get("model_version"),
        )
        row = observations_record(environment=environment, batch=batch)
        return Response(
            {
                "batch": str(row.uuid),
                "rows": row.rows,
                "model_version": row.model_version_id,
                "window_start": row.window_start,
                "first_at": row.first_at,
                "last_at": row.last_at,
            },
            status=status.HTTP_201_CREATED,
        )


class LabelsView(_IngestView):
    """Post ground truth by request id (``request_id``, ``label``, optional ``labelled_at``)."""

    @extend_schema(request={"application/json": dict}, responses={201: dict, 400: dict})
    def post(self, request, pk: int):
        environment = self.get_environment()
        table = parse_labels(read_body(request), content_type=request.META.get("CONTENT_TYPE", ""))
        row = labels_record(environment=environment, table=table)
        return Response({"batch": str(row.uuid), "rows": row.rows}, status=status.HTTP_201_CREATED)


# --- token management -------------------------------------------------------------------------


class IngestTokenSerializer(serializers.ModelSerializer):
    environment = serializers.PrimaryKeyRelatedField(queryset=Environment.objects.all())
    project = serializers.CharField(source="environment.project.slug", read_only=True)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = IngestToken
        fields = [
            "id",
            "environment",
            "project",
            "name",
            "prefix",
            "created",
            "last_used_at",
            "revoked_at",
            "is_active",
        ]
        read_only_fields = ["prefix", "created", "last_used_at", "revoked_at"]


def _admin_of(user):
    return Membership.objects.filter(user=user, role=Role.ADMIN).values("project_id")


class IngestTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    ProjectScopedViewSet,
):
    """Ingest tokens of the environments of projects you administer. Creating one answers
    its value (``token``) this once only; ``revoke`` stops it at once. Every deployment makes
    sure its environment has one (the secret variable ``CONTROLPLANE_INGEST_TOKEN``)."""

    serializer_class = IngestTokenSerializer
    project_path = "environment__project"
    write_role = Role.ADMIN
    action_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN, "revoke": Role.ADMIN}
    filterset_fields = ["environment"]
    ordering_fields = ["created"]

    def get_queryset(self):
        qs = IngestToken.objects.select_related("environment__project")
        if getattr(self, "swagger_fake_view", False):
            return qs.none()
        user = self.request.user
        if self.action != "list":
            # A member asking for one is refused (403) by the role check, not told 404.
            return restrict_to_visible(qs, user, "environment__project")
        if user.is_superuser:
            return qs
        return qs.filter(environment__project_id__in=_admin_of(user))

    def get_create_project_id(self, request):
        pk = request.data.get("environment") if hasattr(request.data, "get") else None
        try:
            return Environment.objects.filter(pk=int(pk)).values_list("project_id", flat=True)[0]
        except (TypeError, ValueError, IndexError):
            return None

    def create(self, request, *args, **kwargs):
        if not request.user.is_superuser and not _admin_of(request.user).exists():
            raise PermissionDenied("You need the admin role in a project.")
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        environment = serializer.validated_data["environment"]
        if not has_role(request.user, environment.project_id, Role.ADMIN):
            raise PermissionDenied("You need the admin role in this project.")
        token, raw = ingest_token_create(
            environment=environment, name=serializer.validated_data["name"], actor=request.user
        )
        data = {**self.get_serializer(token).data, "token": raw}
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        token = ingest_token_revoke(token=self.get_object(), actor=request.user)
        return Response(self.get_serializer(token).data)
