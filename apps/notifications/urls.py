"""Included at ``integrations/``: Slack's interactivity endpoint and the notification pages."""

from django.urls import path

from . import views

app_name = "notifications"
urlpatterns = [
    path("slack/interactions/", views.slack_interactions, name="slack-interactions"),
    path("slack/account/", views.slack_account, name="slack-account"),
    path("notifications/<slug:slug>/", views.project_notifications, name="project"),
    path("notifications/<slug:slug>/targets/new/", views.target_add, name="target-add"),
    path("notifications/<slug:slug>/targets/<int:pk>/", views.target_edit, name="target-edit"),
    path(
        "notifications/<slug:slug>/targets/<int:pk>/enabled/",
        views.target_enabled,
        name="target-enabled",
    ),
    path(
        "notifications/<slug:slug>/targets/<int:pk>/delete/",
        views.target_remove,
        name="target-delete",
    ),
    path(
        "notifications/<slug:slug>/targets/<int:pk>/test/",
        views.target_send_test,
        name="target-test",
    ),
]
