import django_filters

from ..models import Deployment, Promotion, Release


class ReleaseFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")
    blocked = django_filters.BooleanFilter(
        field_name="blocked_at", lookup_expr="isnull", exclude=True
    )

    class Meta:
        model = Release
        fields = ["project", "version", "commit_sha", "blocked"]


class DeploymentFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="environment__project__slug")
    environment = django_filters.CharFilter(field_name="environment__name")
    release = django_filters.CharFilter(field_name="release__version")

    class Meta:
        model = Deployment
        fields = ["project", "environment", "release", "status"]


class PromotionFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="environment__project__slug")
    environment = django_filters.CharFilter(field_name="environment__name")
    release = django_filters.CharFilter(field_name="release__version")

    class Meta:
        model = Promotion
        fields = ["project", "environment", "release", "status"]
