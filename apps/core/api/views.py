from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from ..models import WorkerPing
from ..services import worker_ping_create


class WorkerPingSerializer(serializers.ModelSerializer):
    round_trip_ms = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = WorkerPing
        fields = ["id", "created", "answered_at", "worker", "round_trip_ms"]


class WorkerPingView(APIView):
    """Send a task through the broker to a worker and see it answer (GET: the latest pings).
    Staff only: it is about the install, not a project (as the system page)."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: WorkerPingSerializer(many=True)})
    def get(self, request):
        pings = WorkerPing.objects.all()[:10]
        return Response(WorkerPingSerializer(pings, many=True).data)

    @extend_schema(request=None, responses={202: WorkerPingSerializer})
    def post(self, request):
        ping = worker_ping_create(user=request.user)
        return Response(WorkerPingSerializer(ping).data, status=status.HTTP_202_ACCEPTED)
