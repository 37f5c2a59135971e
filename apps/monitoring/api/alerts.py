"""``/api/v1/alerts/`` and ``/api/v1/silences/``: project-scoped like the other resources;
viewers read, developers acknowledge, silence and expire."""

import django_filters
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.api.viewsets import ProjectScopedViewSet, body_slug
from apps.accounts.choices import Role
from apps.projects.models import Environment, Project

from .. import alert_selectors as selectors
from ..choices import AlertSource, AlertStatus, MatchOp, Severity
from ..models import Alert, Silence
from ..services.alerts import alert_acknowledge, silence_create, silence_expire


class AlertFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")
    status = django_filters.ChoiceFilter(choices=AlertStatus.choices)
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    source = django_filters.ChoiceFilter(choices=AlertSource.choices)
    environment = django_filters.ModelChoiceFilter(queryset=Environment.objects.none())
    rule = django_filters.CharFilter()
    acknowledged = django_filters.BooleanFilter(
        field_name="acknowledged_at", lookup_expr="isnull", exclude=True
    )

    class Meta:
        model = Alert
        fields = ["project", "status", "severity", "environment", "rule", "source"]

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, request=request, **kwargs)
        self.filters["environment"].queryset = Environment.objects.all()
        self.form.fields["environment"].queryset = Environment.objects.all()


class AlertSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    acknowledged_by = serializers.StringRelatedField()

    class Meta:
        model = Alert
        fields = [
            "id",
            "project",
            "environment",
            "source",
            "rule",
            "fingerprint",
            "labels",
            "annotations",
            "severity",
            "status",
            "summary",
            "value",
            "drift_check",
            "deployment",
            "starts_at",
            "last_seen_at",
            "resolved_at",
            "acknowledged_at",
            "acknowledged_by",
            "group_key",
            "last_notified_at",
            "notified_count",
            "resolved_notified_at",
            "silenced_by",
        ]
        read_only_fields = fields


class AcknowledgeSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Alerts of the projects you are a member of (read-only but for ``acknowledge``)."""

    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    ordering_fields = ["starts_at", "id", "severity"]
    action_roles = {"acknowledge": Role.DEVELOPER}

    def get_queryset(self):
        return selectors.alert_list(user=self.request.user)

    def get_permission_project_id(self, obj) -> int | None:
        return obj.project_id  # no project: superusers only (they pass every check)

    @extend_schema(request=AcknowledgeSerializer, responses={200: AlertSerializer})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """Mark a firing alert as acknowledged (409 when resolved or acknowledged already)."""
        body = AcknowledgeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        alert = alert_acknowledge(
            alert=self.get_object(), actor=request.user, comment=body.validated_data["comment"]
        )
        return Response(AlertSerializer(self.get_queryset().get(pk=alert.pk)).data)


class MatcherSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    op = serializers.ChoiceField(choices=MatchOp.choices)
    value = serializers.CharField(max_length=1000, allow_blank=True)


class SilenceSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", queryset=Project.objects.all())
    matchers = MatcherSerializer(many=True)
    created_by = serializers.StringRelatedField(read_only=True)
    expired_by = serializers.StringRelatedField(read_only=True)
    active = serializers.SerializerMethodField()

    class Meta:
        model = Silence
        fields = [
            "id",
            "project",
            "matchers",
            "reason",
            "starts_at",
            "ends_at",
            "created_by",
            "expired_by",
            "created",
            "active",
        ]
        read_only_fields = ["id", "created_by", "expired_by", "created", "active"]
        extra_kwargs = {"starts_at": {"required": False}}

    def get_active(self, obj) -> bool:
        return obj.is_active(timezone.now())


class SilenceViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    ProjectScopedViewSet,
):
    """Silences hold back notifications of matching alerts until they end. ``expire`` ends
    one now."""

    serializer_class = SilenceSerializer
    filterset_fields = ["project__slug"]
    ordering_fields = ["ends_at", "id"]
    action_roles = {"expire": Role.DEVELOPER}

    def get_queryset(self):
        qs = selectors.silence_list(user=self.request.user)
        active = self.request.query_params.get("active")
        if active in ("true", "1"):
            qs = qs.filter(ends_at__gt=timezone.now())
        elif active in ("false", "0"):
            qs = qs.filter(ends_at__lte=timezone.now())
        return qs

    def get_permission_project_id(self, obj) -> int | None:
        return obj.project_id

    def get_create_project_id(self, request):
        return Project.objects.filter(slug=body_slug(request)).values_list("pk", flat=True).first()

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = silence_create(
            project=data["project"],
            matchers=[dict(m) for m in data["matchers"]],
            reason=data["reason"],
            starts_at=data.get("starts_at"),
            ends_at=data["ends_at"],
            actor=self.request.user,
        )

    @extend_schema(request=None, responses={200: SilenceSerializer})
    @action(detail=True, methods=["post"])
    def expire(self, request, pk=None):
        """End the silence now."""
        silence = silence_expire(silence=self.get_object(), actor=request.user)
        return Response(SilenceSerializer(silence).data, status=status.HTTP_200_OK)
