from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.viewsets import ProjectScopedViewSet, body_slug
from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.projects.models import Project
from apps.projects.selectors import project_list
from apps.projects.spec import ParamError

from .. import selectors, services
from ..choices import Trigger
from ..commits import Commit
from ..logs import OffsetError, log_offset, log_path, log_size, read_range
from ..triggers import pipeline_start
from .filters import JobFilter, RunFilter
from .serializers import JobSerializer, PipelineStartSerializer, RunCreateSerializer, RunSerializer


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Pipeline runs (build history) across the projects you can see."""

    serializer_class = RunSerializer
    filterset_class = RunFilter
    ordering_fields = ["created", "number", "finished_at"]

    def get_queryset(self):
        qs = selectors.run_list(user=self.request.user)
        if self.action == "retrieve":
            qs = qs.prefetch_related("jobs")
        return qs

    def get_create_project_id(self, request):
        return Project.objects.filter(slug=body_slug(request)).values_list("pk", flat=True).first()

    @extend_schema(request=RunCreateSerializer, responses={201: RunSerializer})
    def create(self, request, *args, **kwargs):
        """Trigger a run by hand (needs the developer role; a run of inline ``jobs`` needs the
        admin role unless the install says otherwise, and never gets protected variables)."""
        serializer = RunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data.get("jobs"):
            # Inline jobs are code nobody pushed: only the role the install names (admin unless
            # set) may run them, and never with protected variables (run_create: protected off).
            role = settings.CONTROLPLANE_INLINE_JOBS_ROLE
            if not has_role(request.user, data["project"].pk, role):
                raise PermissionDenied(
                    f"Runs of inline jobs need the {role} role in this project (they run code "
                    "nobody pushed); run a branch, tag or commit of the repository instead."
                )
            run = services.run_create(
                project=data["project"],
                jobs=data["jobs"],
                actor=request.user,
                trigger=Trigger.API,
                commit=Commit(sha=data["commit_sha"], ref=data["ref"]),
            )
        else:
            run = services.run_request(
                project=data["project"],
                actor=request.user,
                trigger=Trigger.API,
                commit=Commit(sha=data["commit_sha"], ref=data["ref"]),
            )
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={201: RunSerializer})
    @action(detail=True, methods=["post"])
    def rerun(self, request, pk=None):
        """A new run of the same commit (the spec is read again)."""
        run = services.run_rerun(run=self.get_object(), actor=request.user)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: RunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel the run and every unfinished job (running ones are killed)."""
        run = services.run_cancel(run=self.get_object(), actor=request.user)
        return Response(RunSerializer(run).data)


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    serializer_class = JobSerializer
    filterset_class = JobFilter
    ordering_fields = ["id", "started_at"]
    project_path = "run__project"

    def get_queryset(self):
        return selectors.job_list(user=self.request.user).prefetch_related("artifacts")

    @extend_schema(
        responses={
            # The file's own type, guessed from its name (report.html is text/html).
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            (200, "*/*"): OpenApiTypes.BINARY,
        }
    )
    @action(detail=True, methods=["get"], url_path=r"artifacts/(?P<path>.+)")
    def artifact(self, request, pk=None, path=""):
        """Download one of the job's artifacts by its path."""
        from django.http import FileResponse, Http404

        artifact = self.get_object().artifacts.filter(path=path).first()
        if artifact is None or not artifact.file_path.is_file():
            raise Http404("No such artifact.")
        return FileResponse(open(artifact.file_path, "rb"), as_attachment=True)  # noqa: SIM115

    @extend_schema(request=None, responses={200: JobSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Run a finished job again as a new attempt (its run reopens if it had finished)."""
        job = services.job_retry(job=self.get_object(), actor=request.user)
        return Response(JobSerializer(job).data)

    @extend_schema(
        parameters=[OpenApiParameter("offset", int), OpenApiParameter("limit", int)],
        responses={
            (200, "text/plain"): str,
            400: OpenApiResponse(description="offset or limit is not a whole number."),
            416: OpenApiResponse(description="offset is past the end of the log."),
        },
    )
    @action(detail=True, methods=["get"])
    def log(self, request, pk=None):
        """The job's log from byte ``offset``; ``X-Log-Next-Offset`` says where to go on."""
        job = self.get_object()
        path = log_path(job.pk, job.run_id)
        try:
            offset = log_offset(request.query_params.get("offset"), log_size(path))
        except OffsetError as exc:
            return Response({"detail": str(exc), "code": "bad_offset"}, status=exc.status)
        try:
            limit = min(max(int(request.query_params.get("limit", 1 << 20)), 1), 8 << 20)
        except ValueError:
            return Response({"detail": "limit must be an integer."}, status=400)
        data, next_offset = read_range(path, offset, limit)
        response = HttpResponse(data, content_type="text/plain; charset=utf-8")
        response["X-Log-Next-Offset"] = str(next_offset)
        response["X-Job-Status"] = job.status
        return response


class PipelineRunStartView(APIView):
    """``POST /api/v1/projects/{slug}/pipelines/{name}/runs/``: start a named pipeline of the
    project (needs the developer role, as any run started by hand). 201 with the run; 400
    ``{"params": {"<name>": ["message"]}}`` naming a parameter that does not fit, and no run;
    200 ``{"run": null, "detail": ...}`` when ``concurrency: skip`` started none."""

    @extend_schema(request=PipelineStartSerializer, responses={201: RunSerializer})
    def post(self, request, project: str, name: str):
        from django.shortcuts import get_object_or_404

        projects = project_list(user=request.user)
        found = projects.filter(slug=project).first()  # a slug may be all digits: it wins
        if found is None:
            found = get_object_or_404(projects, pk=int(project) if project.isdigit() else 0)
        if not has_role(request.user, found.pk, Role.DEVELOPER):
            raise PermissionDenied("Starting a pipeline needs the developer role in this project.")
        body = PipelineStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        environment = None
        if data["environment"]:
            environment = found.environments.filter(name=data["environment"]).first()
            if environment is None:
                raise ValidationError({"environment": [f"No environment '{data['environment']}'."]})
        who = request.user.get_username()
        try:
            run = pipeline_start(
                project=found,
                pipeline=name,
                actor=request.user,
                trigger=Trigger.API,
                params=data["params"],
                reason=data["reason"] or f"by {who} through the API",
                environment=environment,
            )
        except ParamError as exc:
            return Response({"params": {exc.name: [exc.message]}}, status=400)
        if run is None:
            detail = f"Not started: a run of '{name}' is still active (concurrency: skip)."
            return Response({"run": None, "detail": detail}, status=status.HTTP_200_OK)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)
