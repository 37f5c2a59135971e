from django.urls import path

from . import views

app_name = "releases"
urlpatterns = [
    path("<slug:slug>/releases/<int:pk>/", views.release_detail, name="detail"),
    path("<slug:slug>/releases/<int:pk>/deploy/", views.release_deploy, name="deploy"),
    path("<slug:slug>/releases/<int:pk>/promote/", views.release_promote, name="promote"),
    path("<slug:slug>/deployments/<int:pk>/", views.deployment_detail, name="deployment"),
    path("<slug:slug>/promotions/<int:pk>/", views.promotion_detail, name="promotion"),
    path("<slug:slug>/promotions/<int:pk>/decide/", views.promotion_decision, name="decide"),
    path(
        "<slug:slug>/environments/<slug:name>/rollback/<int:release_pk>/",
        views.environment_rollback,
        name="rollback",
    ),
]
