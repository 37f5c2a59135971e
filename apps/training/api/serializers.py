from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import Dataset, DatasetVersion, ModelVersion


class DatasetVersionSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="dataset.name", read_only=True)
    project = serializers.CharField(source="dataset.project.slug", read_only=True)
    run = serializers.SerializerMethodField()
    job = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "project",
            "dataset",
            "version",
            "fingerprint",
            "rows",
            "columns",
            "size_bytes",
            "format",
            "synthetic",
            "run",
            "job",
            "created",
            "download_url",
        ]
        read_only_fields = fields

    def get_run(self, obj) -> int | None:
        """The producing run's number in its project (a version from a commit: that run)."""
        return obj.run.number if obj.run_id else None

    def get_job(self, obj) -> str | None:
        return obj.job.name if obj.job_id else None

    def get_download_url(self, obj) -> str:
        return reverse("dataset-version-download", args=[obj.pk])


class DatasetVersionDetailSerializer(DatasetVersionSerializer):
    class Meta(DatasetVersionSerializer.Meta):
        fields = [*DatasetVersionSerializer.Meta.fields, "profile"]
        read_only_fields = fields


class DatasetSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project.slug", read_only=True)
    version_count = serializers.IntegerField(read_only=True)
    latest = DatasetVersionSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Dataset
        fields = ["id", "project", "name", "created", "version_count", "latest"]
        read_only_fields = fields


class DatasetVersionRefSerializer(serializers.ModelSerializer):
    """A dataset version as the registry's lineage names it."""

    dataset = serializers.CharField(source="dataset.name", read_only=True)
    run = serializers.IntegerField(source="run.number", read_only=True, allow_null=True)
    job = serializers.CharField(source="job.name", read_only=True, allow_null=True)

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "dataset",
            "version",
            "fingerprint",
            "rows",
            "size_bytes",
            "format",
            "synthetic",
            "run",
            "job",
            "created",
        ]
        read_only_fields = fields


class ModelVersionSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    run = serializers.SerializerMethodField()
    job = serializers.SerializerMethodField()
    aliases = serializers.SerializerMethodField()
    gate_passed = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "project",
            "name",
            "version",
            "commit_sha",
            "run",
            "job",
            "metrics",
            "params",
            "tags",
            "dataset_fingerprint",
            "artifact_uri",
            "artifact_digest",
            "aliases",
            "gate_passed",
            "created",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_run(self, obj):
        if obj.job_id:
            return obj.job.run.number
        return None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_job(self, obj):
        return obj.job.name if obj.job_id else None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_aliases(self, obj) -> list[str]:
        """The environments this version serves in."""
        return [a.environment.name for a in obj.aliases.all()]

    @extend_schema_field(serializers.BooleanField(allow_null=True))
    def get_gate_passed(self, obj):
        verdict = getattr(obj, "gate_verdict", None)
        return verdict.passed if verdict is not None else None


class ModelVersionDetailSerializer(ModelVersionSerializer):
    trained_on = DatasetVersionRefSerializer(many=True, read_only=True)
    evaluated_on = DatasetVersionRefSerializer(many=True, read_only=True)
    series = serializers.SerializerMethodField()

    class Meta(ModelVersionSerializer.Meta):
        fields = [*ModelVersionSerializer.Meta.fields, "trained_on", "evaluated_on", "series"]
        read_only_fields = fields

    @extend_schema_field(
        serializers.DictField(child=serializers.ListField(child=serializers.ListField()))
    )
    def get_series(self, obj):
        """``{key: [[step, value], …]}``, thinned to a few hundred points per key."""
        from ..selectors import series

        return {k: [list(p) for p in v] for k, v in series(model_version=obj).items()}


class CompareCellSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True)
    best = serializers.BooleanField()


class CompareRowSerializer(serializers.Serializer):
    name = serializers.CharField()
    lower_is_better = serializers.BooleanField()
    cells = CompareCellSerializer(many=True)


class CompareSerializer(serializers.Serializer):
    versions = ModelVersionSerializer(many=True)
    rows = CompareRowSerializer(many=True)
