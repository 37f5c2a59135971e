from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.api.viewsets import ProjectScopedViewSet
from apps.accounts.choices import Role

from .. import selectors, services
from .filters import DeliveryFilter
from .serializers import DeliveryDetailSerializer, DeliverySerializer


class WebhookDeliveryViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet
):
    """The webhook delivery ledger (read-only). ``redeliver`` (developer role) processes a
    recorded delivery's payload again as a new delivery, which may start a new run."""

    filterset_class = DeliveryFilter
    ordering_fields = ["received_at", "id"]
    action_roles = {"redeliver": Role.DEVELOPER}

    def get_queryset(self):
        return selectors.delivery_list(
            user=self.request.user, with_payload=self.action == "retrieve"
        )

    def get_serializer_class(self):
        if self.action in ("retrieve", "redeliver"):
            return DeliveryDetailSerializer
        return DeliverySerializer

    def get_permission_project_id(self, obj) -> int | None:
        # Rows naming no project are only listed for superusers (who pass every check).
        return obj.project_id

    @extend_schema(request=None, responses={202: DeliveryDetailSerializer})
    @action(detail=True, methods=["post"])
    def redeliver(self, request, pk=None):
        """Process the delivery's stored payload again, as a new delivery."""
        delivery = services.delivery_redeliver(delivery=self.get_object(), actor=request.user)
        delivery = selectors.delivery_list(user=request.user, with_payload=True).get(pk=delivery.pk)
        return Response(DeliveryDetailSerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
