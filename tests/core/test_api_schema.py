import pytest
from django.urls import reverse
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db


def test_schema_is_valid_openapi_3(client):
    response = client.get(reverse("schema"), {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    validate(schema)  # raises on any violation of the OpenAPI 3 spec
    paths = schema["paths"]
    for resource in (
        "projects",
        "environments",
        "runs",
        "jobs",
        "releases",
        "deployments",
        "promotions",
    ):
        assert f"/api/v1/{resource}/" in paths
    assert "post" in paths["/api/v1/promotions/{id}/approve/"]


def test_swagger_ui_is_served_without_a_cdn(client):
    response = client.get(reverse("swagger-ui"))
    assert response.status_code == 200
    assert b"cdn.jsdelivr" not in response.content
    assert b"/static/drf_spectacular_sidecar/" in response.content


def test_lists_are_paginated_and_filterable(api, admin_user, project):
    client = api(admin_user)
    body = client.get(reverse("environment-list"), {"project": project.slug, "page_size": 2}).json()
    assert body["count"] == 3
    assert len(body["results"]) == 2
    assert body["next"]
    names = [
        e["name"]
        for e in client.get(reverse("environment-list"), {"name": "staging"}).json()["results"]
    ]
    assert names == ["staging"]
