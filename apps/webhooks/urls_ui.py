"""The delivery pages, included at the root: ``/webhooks/`` and ``/p/<slug>/webhooks/…``."""

from django.urls import path

from . import views

app_name = "webhooks"
urlpatterns = [
    path("webhooks/", views.delivery_list, name="all"),
    path("p/<slug:slug>/webhooks/", views.delivery_list, name="list"),
    path("p/<slug:slug>/webhooks/<int:pk>/", views.delivery_detail, name="detail"),
    path("p/<slug:slug>/webhooks/<int:pk>/payload.json", views.delivery_payload, name="payload"),
    path("p/<slug:slug>/webhooks/<int:pk>/redeliver/", views.delivery_redeliver, name="redeliver"),
]
