import django_filters

from ..models import Environment, Project


class ProjectFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Project
        fields = ["slug", "git_provider"]


class EnvironmentFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")

    class Meta:
        model = Environment
        fields = ["project", "name", "auto_deploy", "deployer"]
