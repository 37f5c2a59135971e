from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.accounts import views as account_views
from apps.core import views as core_views
from apps.monitoring.prometheus import metrics_view
from apps.monitoring.views_alerts import alertmanager_webhook
from apps.pipelines.views import run_list
from apps.releases.views import approvals_inbox, dashboard

handler404 = "apps.core.views.error_404"
handler500 = "apps.core.views.error_500"

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("", dashboard, name="dashboard"),
    path("approvals/", approvals_inbox, name="approvals"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tokens/", account_views.token_list, name="tokens"),
    path("tokens/<int:pk>/revoke/", account_views.token_revoke, name="token-revoke"),
    path("system/", core_views.system, name="system"),
    path("system/ping/", core_views.system_ping, name="system-ping"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("controlplane.api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script (CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("runs/", run_list, name="history"),
    path("hooks/", include("apps.webhooks.urls")),
    path("integrations/alertmanager/", alertmanager_webhook, name="alertmanager-receiver"),
    path("integrations/", include("apps.notifications.urls")),
    path("", include("apps.webhooks.urls_ui")),
    path("p/", include("apps.pipelines.urls")),
    path("p/", include("apps.releases.urls")),
    path("p/", include("apps.training.urls")),
    path("p/", include("apps.projects.urls")),
    path("p/", include("apps.monitoring.urls_alerts")),
]
