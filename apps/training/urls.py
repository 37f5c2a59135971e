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
]
