"""The receivers, included at ``hooks/``: ``POST /hooks/<provider>/<project-slug>/``."""

from django.urls import path, register_converter

from . import views
from .providers import PROVIDERS


class ProviderConverter:
    regex = "|".join(PROVIDERS)

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ProviderConverter, "webhook_provider")

app_name = "hooks"
urlpatterns = [
    # <str:slug>, not <slug:slug>: any name gets the same 403 as an unknown project.
    path("<webhook_provider:provider>/<str:slug>/", views.receive, name="receive"),
]
