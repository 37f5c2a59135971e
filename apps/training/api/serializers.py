from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import DatasetVersion, ModelVersion


class DatasetVersionSerializer(serializers.ModelSerializer):
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
    trained_on = DatasetVersionSerializer(many=True, read_only=True)
    evaluated_on = DatasetVersionSerializer(many=True, read_only=True)
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
