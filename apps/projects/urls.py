from django.urls import include, path

from . import views

app_name = "projects"
urlpatterns = [
    path("<slug:slug>/", views.project_detail, name="detail"),
    path("<slug:slug>/variables/", views.variable_save, name="variable-save"),
    # The environment page is about deployments, so the releases app renders it; a dotted
    # name keeps projects free of a Python import of releases.
    path("<slug:slug>/environments/<slug:name>/", include("apps.releases.urls_environment")),
]
