from django.urls import path

from . import views

app_name = "releases"
urlpatterns = [
    path("<slug:slug>/releases/<int:pk>/", views.release_detail, name="detail"),
    path("<slug:slug>/promotions/<int:pk>/", views.promotion_detail, name="promotion"),
    path("<slug:slug>/promotions/<int:pk>/decide/", views.promotion_decide, name="decide"),
]
