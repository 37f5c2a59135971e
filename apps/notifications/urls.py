"""Included at ``integrations/``: Slack's interactivity endpoint and the notification pages."""

from django.urls import path

from . import views

app_name = "notifications"
urlpatterns = [
    path("slack/interactions/", views.slack_interactions, name="slack-interactions"),
    path("slack/account/", views.slack_account, name="slack-account"),
    path("notifications/<slug:slug>/", views.project_notifications, name="project"),
]
