"""The baseline for webhook ingest: the smallest Django app answering JSON, no database.

Served by gunicorn exactly like the control plane: ``gunicorn bareapp:application``.
"""

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

settings.configure(
    DEBUG=False,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="bench-only",  # noqa: S106
    MIDDLEWARE=[],
)


@csrf_exempt
def receive(request):
    return JsonResponse({"detail": "ok", "size": len(request.body)}, status=202)


urlpatterns = [path("hook/", receive)]
application = get_wsgi_application()
