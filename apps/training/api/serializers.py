from django.urls import reverse
from rest_framework import serializers

from ..models import Dataset, DatasetVersion


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
