"""The alert and silence pages, included at ``p/``: ``/p/<slug>/alerts/…``."""

from django.urls import path

from . import views_alerts as views

app_name = "alerts"
urlpatterns = [
    path("<slug:slug>/alerts/", views.alert_list, name="list"),
    path("<slug:slug>/alerts/<int:pk>/", views.alert_detail, name="detail"),
    path("<slug:slug>/alerts/<int:pk>/acknowledge/", views.alert_ack, name="acknowledge"),
    path("<slug:slug>/silences/", views.silence_list, name="silences"),
    path("<slug:slug>/silences/new/", views.silence_new, name="silence-new"),
    path("<slug:slug>/silences/<int:pk>/expire/", views.silence_end, name="silence-expire"),
]
