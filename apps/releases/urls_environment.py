"""The environment page, served under the name ``projects:environment``.

``apps/projects/urls.py`` includes this module by its dotted name (no Python import of
releases from projects): the page shows what runs where, which releases owns, while
``Environment.get_absolute_url`` keeps reversing the projects name.
"""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.environment_detail, name="environment"),
]
