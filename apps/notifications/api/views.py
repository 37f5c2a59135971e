from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.viewsets import ProjectScopedViewSet, body_slug
from apps.accounts.choices import Role
from apps.projects.models import Project

from .. import linking, selectors, services
from .filters import DeliveryFilter, TargetFilter
from .serializers import (
    NotificationDeliverySerializer,
    NotificationTargetSerializer,
    SlackIdentityLinkSerializer,
    SlackIdentitySerializer,
)


class NotificationTargetViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    ProjectScopedViewSet,
):
    """Where a project's events go: Slack channels, email addresses, outgoing webhooks.
    Members see them; writing needs the project's admin role. ``secret`` (webhooks: the HMAC
    key of `X-Controlplane-Signature`) is write-only; omit it on update to keep it. ``events``
    empty means all the events the kind takes. ``test`` sends a test notification."""

    serializer_class = NotificationTargetSerializer
    filterset_class = TargetFilter
    ordering_fields = ["created", "kind", "name"]
    write_role = Role.ADMIN
    action_roles = {"test": Role.ADMIN}

    def get_queryset(self):
        return selectors.target_list(user=self.request.user)

    def get_create_project_id(self, request):
        return Project.objects.filter(slug=body_slug(request)).values_list("pk", flat=True).first()

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = services.target_create(actor=self.request.user, **data)

    def perform_update(self, serializer):
        changes = {
            k: v for k, v in serializer.validated_data.items() if k not in ("project", "kind")
        }
        serializer.instance = services.target_update(
            target=serializer.instance, actor=self.request.user, **changes
        )

    def perform_destroy(self, instance):
        services.target_delete(target=instance, actor=self.request.user)

    @extend_schema(request=None, responses={202: None})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a test notification to this target (see its deliveries for the outcome)."""
        services.target_test(target=self.get_object(), actor=request.user)
        return Response({"detail": "Test notification queued."}, status=status.HTTP_202_ACCEPTED)


class NotificationDeliveryViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet
):
    """The notification ledger (read-only): what was sent where, and why not."""

    serializer_class = NotificationDeliverySerializer
    filterset_class = DeliveryFilter
    ordering_fields = ["created", "id"]

    def get_queryset(self):
        return selectors.delivery_list(user=self.request.user)


class SlackIdentityView(APIView):
    """Your Slack account: buttons you click in Slack act as you. ``PUT`` links (or re-links)
    it, ``DELETE`` unlinks it."""

    serializer_class = SlackIdentitySerializer

    def _identity(self, request):
        identity = selectors.slack_identity_for(user=request.user)
        if identity is None:
            raise NotFound("No Slack account is linked.")
        return identity

    @extend_schema(responses={200: SlackIdentitySerializer})
    def get(self, request):
        return Response(SlackIdentitySerializer(self._identity(request)).data)

    @extend_schema(
        request=SlackIdentityLinkSerializer,
        responses={200: SlackIdentitySerializer, 202: SlackIdentityLinkSerializer},
    )
    def put(self, request):
        """Two steps: ``{"slack_user_id", "team_id"}`` has the bot send a one-time code to that
        Slack user (202, nothing linked yet); ``{"code"}`` links it (200)."""
        body = SlackIdentityLinkSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if body.validated_data.get("code"):
            identity = linking.slack_link_confirm(
                user=request.user, code=body.validated_data["code"]
            )
            return Response(SlackIdentitySerializer(identity).data)
        sent = linking.slack_link_start(
            user=request.user,
            slack_user_id=body.validated_data["slack_user_id"],
            team_id=body.validated_data.get("team_id", ""),
        )
        return Response(
            {**sent, "detail": 'A code was sent to this Slack user: PUT it back as {"code"}.'},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(responses={204: None})
    def delete(self, request):
        self._identity(request)
        services.slack_identity_unlink(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
