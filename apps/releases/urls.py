from django.urls import path

from . import views

app_name = "releases"
urlpatterns = [
    # A release is named by its version (an old link by id redirects there).
    path("<slug:slug>/releases/<str:key>/", views.release_detail, name="detail"),
    path("<slug:slug>/releases/<str:key>/deploy/", views.release_deploy, name="deploy"),
    path("<slug:slug>/releases/<str:key>/promote/", views.release_promote, name="promote"),
    path("<slug:slug>/deployments/<int:pk>/", views.deployment_detail, name="deployment"),
    path("<slug:slug>/promotions/<int:pk>/", views.promotion_detail, name="promotion"),
    path("<slug:slug>/promotions/<int:pk>/decide/", views.promotion_decision, name="decide"),
    path(
        "<slug:slug>/models/<str:name>/v<int:version>/lineage/",
        views.model_lineage,
        name="model-lineage",
    ),
    path(
        "<slug:slug>/environments/<slug:name>/freeze-windows/",
        views.freeze_window_add,
        name="freeze-add",
    ),
    path(
        "<slug:slug>/environments/<slug:name>/freeze-windows/<int:window_id>/remove/",
        views.freeze_window_remove,
        name="freeze-remove",
    ),
    path(
        "<slug:slug>/environments/<slug:name>/rollback/<str:key>/",
        views.environment_rollback,
        name="rollback",
    ),
]
