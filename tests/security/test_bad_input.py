"""Bad input gets a clear 4xx, never a 500, and changes nothing."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.pipelines.logs import log_path
from apps.pipelines.models import PipelineRun
from apps.projects.models import Environment, FreezeWindow, Project

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_api(api, admin_user):
    client = api(admin_user)
    client.raise_request_exception = False  # a 500 is an answer to check, not an exception
    return client


@pytest.fixture
def production(project):
    return project.environments.get(name="production")


def _snapshot():
    env = list(Environment.objects.order_by("pk").values())
    return (
        env,
        list(FreezeWindow.objects.values()),
        list(Project.objects.values()),
        PipelineRun.objects.count(),
        AuditEvent.objects.count(),
    )


@pytest.fixture
def job_with_log(project, admin_user, django_capture_on_commit_callbacks):
    from apps.pipelines.services import run_create

    with django_capture_on_commit_callbacks(execute=False):
        run = run_create(project=project, actor=admin_user, jobs=[{"name": "t", "script": ["x"]}])
    job = run.jobs.get()
    path = log_path(job.pk, job.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"line one\nline two\n")
    return job


# --- log offsets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "status"),
    [("abc", 400), ("-5", 400), ("1e3", 400), ("9" * 30, 400), ("19", 416), ("100000", 416)],
)
def test_log_offsets_beyond_range_or_not_integers(admin_api, job_with_log, offset, status):
    response = admin_api.get(f"/api/v1/jobs/{job_with_log.pk}/log/", {"offset": offset})
    assert response.status_code == status, response.content
    assert "offset" in response.json()["detail"]


def test_log_offsets_in_range_still_read(admin_api, job_with_log):
    response = admin_api.get(f"/api/v1/jobs/{job_with_log.pk}/log/", {"offset": "9"})
    assert response.status_code == 200 and response.content == b"line two\n"
    end = admin_api.get(f"/api/v1/jobs/{job_with_log.pk}/log/", {"offset": "18"})
    assert end.status_code == 200 and end.content == b""  # the end: the tail waits here


@pytest.mark.parametrize(("offset", "status"), [("x", 400), ("9" * 30, 400), ("500", 416)])
def test_the_page_tail_refuses_bad_offsets(admin_user, job_with_log, offset, status):
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    run = job_with_log.run
    url = reverse("pipelines:job-tail", args=[run.project.slug, run.number, job_with_log.name])
    response = client.get(url, {"offset": offset})
    assert response.status_code == status and b"offset" in response.content


# --- bodies -----------------------------------------------------------------------------------


def test_multipart_null_for_a_required_json_field(admin_api, production):
    before = _snapshot()
    response = admin_api.patch(
        f"/api/v1/environments/{production.pk}/", {"target": "null"}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json() == {"target": ["This field may not be null."]}
    assert _snapshot() == before


def test_multipart_null_for_required_fields(admin_api, project):
    before = _snapshot()
    for url, body in [
        ("/api/v1/runs/", {"project": "null"}),
        ("/api/v1/environments/", {"project": "null", "name": "null"}),
        ("/api/v1/projects/", {"name": "x", "max_concurrent_runs": "null"}),
    ]:
        response = admin_api.post(url, body, format="multipart")
        assert response.status_code == 400, (url, response.content)
    assert _snapshot() == before


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_json_nested_too_deep(admin_api, production, depth):
    before = _snapshot()
    deep = "[" * depth + "]" * depth
    response = admin_api.generic(
        "PATCH",
        f"/api/v1/environments/{production.pk}/",
        json.dumps({"target": "PLACEHOLDER"}).replace('"PLACEHOLDER"', deep),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "nested too deep" in response.json()["detail"]
    assert _snapshot() == before


def test_json_within_the_depth_limit_is_fine(admin_api, production):
    nested = {"a": {"b": {"c": [1, [2, [3]]]}}}
    response = admin_api.patch(
        f"/api/v1/environments/{production.pk}/", {"target": nested}, format="json"
    )
    assert response.status_code == 200
    production.refresh_from_db()
    assert production.target == nested


# --- sane maxima ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("approval_ttl", "999999999 00:00:00"),
        ("approval_ttl", "366 00:00:00"),
        ("approval_ttl", "00:00:00"),
        ("service_port", 0),
        ("service_port", 65536),
        ("service_port", 700000),
    ],
)
def test_ttls_and_ports_beyond_a_sane_maximum(admin_api, production, field, value):
    before = _snapshot()
    response = admin_api.patch(
        f"/api/v1/environments/{production.pk}/", {field: value}, format="json"
    )
    assert response.status_code == 400 and field in response.json()
    assert _snapshot() == before


def test_ttl_and_port_at_the_maximum_are_fine(admin_api, production):
    response = admin_api.patch(
        f"/api/v1/environments/{production.pk}/",
        {"approval_ttl": "365 00:00:00", "service_port": 65535},
        format="json",
    )
    assert response.status_code == 200
    production.refresh_from_db()
    assert production.approval_ttl == timedelta(days=365) and production.service_port == 65535


@pytest.mark.parametrize(
    ("cron", "duration", "field"),
    [
        ("0 0 31 2 *", "01:00:00", "cron"),  # 31 February
        ("0 0 30 2 *", "01:00:00", "cron"),
        ("0 0 31 4 *", "01:00:00", "cron"),  # 31 April
        ("0 17 * * 5", "999999999 00:00:00", "duration"),
        ("0 17 * * 5", "400 00:00:00", "duration"),
    ],
)
def test_freeze_windows_that_never_fire_or_last_for_ever(
    admin_api, production, cron, duration, field
):
    before = _snapshot()
    response = admin_api.post(
        f"/api/v1/environments/{production.pk}/freeze-windows/",
        {"cron": cron, "duration": duration},
        format="json",
    )
    assert response.status_code == 400 and field in response.json(), response.content
    assert _snapshot() == before


def test_a_leap_day_freeze_window_is_fine(admin_api, production):
    response = admin_api.post(
        f"/api/v1/environments/{production.pk}/freeze-windows/",
        {"cron": "0 0 29 2 *", "duration": "1 00:00:00"},
        format="json",
    )
    assert response.status_code == 201


def test_the_environment_page_refuses_a_never_firing_freeze_window(admin_user, production):
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    url = reverse("releases:freeze-add", args=[production.project.slug, production.name])
    response = client.post(url, {"cron": "0 0 31 2 *", "duration": "01:00:00"})
    assert response.status_code in (200, 400) and b"never fires" in response.content
    assert not FreezeWindow.objects.exists()


# --- lengths and counts -----------------------------------------------------------------------


def _inline(project, **extra):
    return {"project": project.slug, "jobs": [{"name": "a", "script": ["true"]}], **extra}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (lambda p: _inline(p, ref="r" * 256), "ref"),
        (
            lambda p: _inline(p, jobs=[{"name": "a", "script": ["true"], "image": "i" * 301}]),
            "jobs",
        ),
        (
            lambda p: _inline(p, jobs=[{"name": f"j{i}", "script": ["true"]} for i in range(101)]),
            "jobs",
        ),
        (lambda p: _inline(p, jobs=[{"name": "a", "script": ["true"] * 1001}]), "jobs"),
    ],
)
def test_caps_on_ref_image_and_inline_job_count(admin_api, project, body, where):
    before = _snapshot()
    response = admin_api.post("/api/v1/runs/", body(project), format="json")
    assert response.status_code == 400 and where in response.json(), response.content
    assert _snapshot() == before


def test_description_cap(admin_api, project):
    before = _snapshot()
    response = admin_api.patch(
        f"/api/v1/projects/{project.slug}/", {"description": "d" * 10_001}, format="json"
    )
    assert response.status_code == 400 and "description" in response.json()
    assert _snapshot() == before


def test_database_refusals_are_4xx_not_500(admin_api, project, monkeypatch):
    """The last net: a value the serializers let through but the database refuses."""
    from django.db import DataError

    from apps.projects import services

    def refuse(**kwargs):
        raise DataError("value too long for type character varying(50)")

    monkeypatch.setattr(services, "project_update", refuse)
    response = admin_api.patch(f"/api/v1/projects/{project.slug}/", {"name": "n"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"
