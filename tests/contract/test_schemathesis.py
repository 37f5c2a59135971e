"""The API against its own OpenAPI schema: schemathesis generates requests for every operation
from the drf-spectacular schema and sends them through the WSGI app, as a superuser and as a
viewer, and checks each answer: never a 5xx, a documented status code, the documented content
type and headers, a body that fits the documented schema.

Bounded: ``CONTRACT_EXAMPLES`` cases per operation and user (default 8), and the whole run
stops generating after ``CONTRACT_SECONDS`` (default 120). Half of the generated cases get a
real object's id in their path, so the detail routes answer 200 as well as 404.
"""

import os
import time
from collections import Counter

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.db import transaction
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup, ServerError

from .world import build_world

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "8"))
BUDGET = float(os.environ.get("CONTRACT_SECONDS", "120"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SERVER_ERROR_CHECKS = {"not_a_server_error"}

# Which object a path's first parameter names, by the path's first segment.
PATH_OBJECTS = {
    "alerts": "alert",
    "silences": "silence",
    "environments": "dev",
    "runs": "run",
    "jobs": "job",
    "releases": "release",
    "deployments": "deployment",
    "promotions": "promotion",
    "notification-targets": "target",
    "webhook-deliveries": "webhook_delivery",
    "projects": "project",
    "model-versions": "model_version",
    "datasets": "dataset",
    "dataset-versions": "dataset_version",
    "ingest-tokens": "ingest_token",
}


def _real_values(world, operation) -> dict[str, list]:
    """Path parameter → values naming real objects, for this operation."""
    segment = operation.path.removeprefix("/api/v1/").split("/")[0]
    name = PATH_OBJECTS.get(segment)
    values: dict[str, list] = {}
    if name is None:
        return values
    obj = world.project if name == "project" else world[name]
    for param in ("id", "slug", "project"):
        if "{" + param + "}" in operation.path:
            values[param] = [obj.slug if name == "project" else obj.pk]
    if "{path}" in operation.path:
        values["path"] = [world["artifact"].path, world["report"].path]
    if "{window_id}" in operation.path:
        values["window_id"] = [world["freeze_window"].pk]
    return values


def _exercise(operation, *, token: str, real: dict, tally: Counter, failures: list, deadline):
    headers = {"Authorization": f"Bearer {token}"}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), data=st.data())
    def run(case, data):
        if time.monotonic() > deadline:
            return
        if real and data.draw(st.booleans(), label="real ids"):
            for param, values in real.items():
                case.path_parameters[param] = data.draw(st.sampled_from(values))
        tally["cases"] += 1
        # Each case in a savepoint rolled back after it: the world stays as built, and one
        # case's database error cannot poison the next.
        with transaction.atomic():
            response = case.call(headers=headers)
            transaction.set_rollback(True)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Failure, FailureGroup) as exc:  # recorded, not raised: no shrinking
            inner = getattr(exc, "exceptions", [exc])
            for failure in inner:
                failures.append(
                    {
                        "operation": operation.label,
                        "status": response.status_code,
                        "check": getattr(failure, "title", type(failure).__name__),
                        "server_error": isinstance(failure, ServerError),
                        "message": str(failure)[:600],
                        "body": response.text[:300],
                        "curl": case.as_curl_command(headers=headers)[:400],
                    }
                )

    run()


@pytest.fixture
def wsgi_app():
    """The real WSGI app, minus closing the connection after each request (as Django's test
    client does): the test's transaction must survive the requests."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_the_api_keeps_its_openapi_contract(admin_user, project, member, wsgi_app, capsys):
    from apps.accounts.services import api_token_create

    world = build_world(project, admin_user)
    viewer = member("viewer")
    tokens = {
        "admin": api_token_create(user=admin_user, name="contract")[1],
        "viewer": api_token_create(user=viewer, name="contract")[1],
    }
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50, "the schema lost its operations"

    tally: Counter = Counter()
    failures: list[dict] = []
    deadline = time.monotonic() + BUDGET
    started = time.monotonic()
    for who, token in tokens.items():
        for operation in operations:
            _exercise(
                operation,
                token=token,
                real=_real_values(world, operation),
                tally=tally,
                failures=failures,
                deadline=deadline,
            )
            tally[f"operations:{who}"] += 1
    elapsed = time.monotonic() - started
    server_errors = [f for f in failures if f["server_error"] or f["status"] >= 500]
    by_check = Counter(f["check"] for f in failures)
    with capsys.disabled():
        print(
            f"\nschemathesis {schemathesis.__version__}: {len(operations)} operations × "
            f"{len(tokens)} users, {tally['cases']} cases in {elapsed:.0f}s; failures: "
            f"{len(failures)} (server errors {len(server_errors)}, "
            f"schema violations {len(failures) - len(server_errors)}) {dict(by_check)}"
        )
        seen = set()
        for f in failures:
            key = (f["operation"], f["check"])
            if key in seen:
                continue
            seen.add(key)
            print(f"- {f['operation']} → {f['status']} [{f['check']}]: {f['message']}")
            print(f"  body: {f['body']!r}\n  {f['curl']}")
    assert time.monotonic() < deadline or tally["cases"] > len(operations), "budget too small"
    assert not failures, f"{len(failures)} contract failures (listed above)"
