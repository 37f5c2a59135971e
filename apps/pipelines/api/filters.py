import django_filters
from django import forms

from apps.core.api.filters import IsoDateTimeFilter

from ..choices import RunStatus, Trigger
from ..models import Job, PipelineRun

_WHEN = forms.DateTimeInput(attrs={"type": "datetime-local"})  # the browser's date picker


class RunFilter(django_filters.FilterSet):
    # The labels and widgets are what the build-history page shows; the API takes the same
    # parameters.
    project = django_filters.CharFilter(
        field_name="project__slug", label="Project", widget=forms.TextInput({"placeholder": "slug"})
    )
    status = django_filters.ChoiceFilter(choices=RunStatus.choices, empty_label="Any")
    trigger = django_filters.ChoiceFilter(choices=Trigger.choices, empty_label="Any")
    branch = django_filters.CharFilter(field_name="ref", label="Branch or tag")
    commit_sha = django_filters.CharFilter(label="Commit")
    author = django_filters.CharFilter(
        field_name="commit_author", lookup_expr="icontains", label="Author"
    )
    created_after = IsoDateTimeFilter(
        field_name="created", lookup_expr="gte", label="From", widget=_WHEN
    )
    created_before = IsoDateTimeFilter(
        field_name="created", lookup_expr="lt", label="Until", widget=_WHEN
    )

    class Meta:
        model = PipelineRun
        fields = ["project", "status", "trigger", "branch", "commit_sha", "author"]


class JobFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="run__project__slug")

    class Meta:
        model = Job
        fields = ["project", "run", "status", "kind", "name"]
