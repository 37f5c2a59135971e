import django_filters

from ..models import NotificationDelivery, NotificationTarget


class TargetFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")

    class Meta:
        model = NotificationTarget
        fields = ["project", "kind", "enabled"]


class DeliveryFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")
    created_after = django_filters.IsoDateTimeFilter(field_name="created", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created", lookup_expr="lt")

    class Meta:
        model = NotificationDelivery
        fields = ["project", "target", "kind", "event", "status", "object_type", "object_id"]
