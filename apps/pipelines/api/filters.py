import django_filters

from ..models import Job, PipelineRun


class RunFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")
    branch = django_filters.CharFilter(field_name="ref")
    author = django_filters.CharFilter(field_name="commit_author", lookup_expr="icontains")
    created_after = django_filters.IsoDateTimeFilter(field_name="created", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created", lookup_expr="lt")

    class Meta:
        model = PipelineRun
        fields = ["project", "status", "trigger", "branch", "commit_sha", "author"]


class JobFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="run__project__slug")

    class Meta:
        model = Job
        fields = ["project", "run", "status", "kind", "name"]
