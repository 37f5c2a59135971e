from django.urls import path

from . import views

app_name = "monitoring"
urlpatterns = [
    # Under the environment page's address, like its freeze windows and rollbacks.
    path(
        "<slug:slug>/environments/<slug:name>/monitoring/",
        views.environment_monitoring,
        name="environment",
    ),
]
