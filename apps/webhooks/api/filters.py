import django_filters

from apps.core.api.filters import IsoDateTimeFilter

from ..models import WebhookDelivery


class DeliveryFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")
    received_after = IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = WebhookDelivery
        fields = ["project", "provider", "status", "event", "ref", "commit_sha", "delivery_id"]
