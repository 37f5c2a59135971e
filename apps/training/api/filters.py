import django_filters

from ..models import ModelVersion


class ModelVersionFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")

    class Meta:
        model = ModelVersion
        fields = ["project", "name", "version", "commit_sha"]
