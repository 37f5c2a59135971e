import django_filters

from apps.core.api.filters import IsoDateTimeFilter

from ..models import NotificationDelivery, NotificationTarget


class TargetFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")

    class Meta:
        model = NotificationTarget
        fields = ["project", "kind", "enabled"]


class DeliveryFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")
    created_after = IsoDateTimeFilter(field_name="created", lookup_expr="gte")
    created_before = IsoDateTimeFilter(field_name="created", lookup_expr="lt")

    class Meta:
        model = NotificationDelivery
        fields = ["project", "target", "kind", "event", "status", "object_type", "object_id"]
