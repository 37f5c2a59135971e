from django.urls import path

from . import views

app_name = "training"
urlpatterns = [
    path("<slug:slug>/datasets/", views.dataset_list, name="datasets"),
    path("<slug:slug>/datasets/<str:name>/", views.dataset_detail, name="dataset"),
    path(
        "<slug:slug>/datasets/<str:name>/v<int:version>/download/",
        views.dataset_download,
        name="dataset-download",
    ),
    path("<slug:slug>/models/", views.model_list, name="models"),
    path("<slug:slug>/models/compare/", views.model_compare, name="compare"),
    path(
        "<slug:slug>/models/<str:name>/v<int:version>/",
        views.model_version_detail,
        name="version",
    ),
    path(
        "<slug:slug>/models/<str:name>/v<int:version>/artifact/",
        views.model_artifact,
        name="artifact",
    ),
    path(
        "<slug:slug>/runs/<int:number>/jobs/<str:job>/series/",
        views.job_series,
        name="job-series",
    ),
]
