import django_filters

from ..models import Dataset, DatasetVersion, ModelVersion


class DatasetFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")

    class Meta:
        model = Dataset
        fields = ["project", "name"]


class DatasetVersionFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="dataset__project__slug")
    name = django_filters.CharFilter(field_name="dataset__name")

    class Meta:
        model = DatasetVersion
        fields = ["project", "dataset", "name", "synthetic", "fingerprint"]


class ModelVersionFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")

    class Meta:
        model = ModelVersion
        fields = ["project", "name", "version", "commit_sha"]
