"""Who may write what: every write operation of the OpenAPI schema (POST, PUT, PATCH, DELETE),
tried as no member, viewer, developer, approver and admin of the object's project, and as an
admin of another project.

The operations come from the schema, not from a list here: an operation added later with no
rule in ``RULES`` fails this test, naming itself. Each rule says the least role that may do
it, how to make the request (path parameters and a body that would succeed) and the status
of a success. Each try runs in a savepoint rolled back after it, so every role meets the same
world. The house's refusals: **404** when the object's project is not yours to see (you cannot
tell it exists), **403** when you see it but your role is too low, or when a body names a
project you hold no role in. After a refusal, a fingerprint of every table of the product
(all rows of every model of ``apps.*`` and the users) must be what it was.
"""

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse

from apps.accounts.choices import ROLE_RANK, Role
from apps.accounts.models import ApiToken
from apps.notifications.models import SlackIdentity
from apps.projects.services import membership_set, project_create
from tests.factories import UserFactory

from .world import World, build_world

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("post", "put", "patch", "delete")
#: Who tries each operation: a project role, or none of the project.
ACTORS = ("no-member", "viewer", "developer", "approver", "admin", "other-admin")
#: Where a rule's role is not a project role.
ANY_USER = "any-user"  # the user's own things (/me/…), or nothing in a project
STAFF = "staff"  # a Django permission (projects.add_project), none of the six has it


@dataclass(frozen=True)
class Rule:
    role: str  # a Role, ANY_USER or STAFF
    ok: int  # the status of a success
    request: Callable[[World, object], tuple[dict, dict]]  # (path params, body)
    #: ``request`` writes too (e.g. gives the project a repository): refusals are compared
    #: with the fingerprint taken after it, not the world's.
    setup_writes: bool = False
    #: The refusal of an actor who cannot see the project, where it is not the house's 404.
    hidden: int = 404


def _p(**params):
    return lambda w, user: (params, {})


RULES: dict[tuple[str, str], Rule] = {
    ("POST", "/api/v1/alerts/{id}/acknowledge/"): Rule(
        Role.DEVELOPER, 200, lambda w, u: ({"id": w["alert"].pk}, {"comment": "on it"})
    ),
    ("POST", "/api/v1/environments/"): Rule(
        Role.ADMIN, 201, lambda w, u: ({}, {"project": w.project.slug, "name": "qa", "order": 9})
    ),
    ("PUT", "/api/v1/environments/{id}/"): Rule(
        Role.ADMIN,
        200,
        lambda w, u: ({"id": w["dev"].pk}, {"project": w.project.slug, "name": "dev", "order": 0}),
    ),
    ("PATCH", "/api/v1/environments/{id}/"): Rule(
        Role.ADMIN, 200, lambda w, u: ({"id": w["dev"].pk}, {"auto_deploy": False})
    ),
    ("POST", "/api/v1/environments/{id}/freeze-windows/"): Rule(
        Role.ADMIN,
        201,
        lambda w, u: ({"id": w["dev"].pk}, {"cron": "0 17 * * 5", "duration": "02:00:00"}),
    ),
    ("DELETE", "/api/v1/environments/{id}/freeze-windows/{window_id}/"): Rule(
        Role.ADMIN,
        204,
        lambda w, u: ({"id": w["staging"].pk, "window_id": w["freeze_window"].pk}, {}),
    ),
    ("POST", "/api/v1/environments/{id}/rollback/"): Rule(
        Role.DEVELOPER,
        202,
        lambda w, u: ({"id": w["dev"].pk}, {"release": w["old_release"].pk, "reason": "bad"}),
    ),
    ("POST", "/api/v1/jobs/{id}/retry/"): Rule(
        Role.DEVELOPER, 200, lambda w, u: ({"id": w["job"].pk}, {})
    ),
    # Linking takes a code Slack delivers; with no bot token set up the first step is a 400
    # for every user, which shows the (any-user) check passed and nothing was linked.
    ("PUT", "/api/v1/me/slack-identity/"): Rule(
        ANY_USER, 400, lambda w, u: ({}, {"slack_user_id": f"U{u.pk:08d}", "team_id": "T012AB3CD"})
    ),
    ("DELETE", "/api/v1/me/slack-identity/"): Rule(
        ANY_USER, 204, lambda w, u: _linked(u), setup_writes=True
    ),
    ("POST", "/api/v1/variables/"): Rule(
        Role.ADMIN,
        201,
        lambda w, u: ({}, {"project": w.project.slug, "key": "ZONE", "value": "b"}),
    ),
    ("DELETE", "/api/v1/variables/{id}/"): Rule(
        Role.ADMIN, 204, lambda w, u: ({"id": w["variable"].pk}, {})
    ),
    ("POST", "/api/v1/notification-targets/"): Rule(
        Role.ADMIN,
        201,
        lambda w, u: (
            {},
            {"project": w.project.slug, "kind": "email", "destination": "ops@example.com"},
        ),
    ),
    ("PUT", "/api/v1/notification-targets/{id}/"): Rule(
        Role.ADMIN,
        200,
        lambda w, u: (
            {"id": w["target"].pk},
            {"project": w.project.slug, "kind": "email", "destination": "sre@example.com"},
        ),
    ),
    ("PATCH", "/api/v1/notification-targets/{id}/"): Rule(
        Role.ADMIN, 200, lambda w, u: ({"id": w["target"].pk}, {"name": "renamed"})
    ),
    ("DELETE", "/api/v1/notification-targets/{id}/"): Rule(
        Role.ADMIN, 204, lambda w, u: ({"id": w["target"].pk}, {})
    ),
    ("POST", "/api/v1/notification-targets/{id}/test/"): Rule(
        Role.ADMIN, 202, lambda w, u: ({"id": w["target"].pk}, {})
    ),
    ("POST", "/api/v1/projects/"): Rule(
        STAFF, 201, lambda w, u: ({}, {"name": "Fraud model", "slug": "fraud-model"})
    ),
    # The project has no repository: a developer gets past the role check to "no commit" (400).
    ("POST", "/api/v1/projects/{project}/pipelines/{name}/runs/"): Rule(
        Role.DEVELOPER, 400, lambda w, u: ({"project": w.project.slug, "name": "train"}, {})
    ),
    ("PUT", "/api/v1/projects/{slug}/"): Rule(
        Role.ADMIN,
        200,
        lambda w, u: ({"slug": w.project.slug}, {"name": "Churn", "slug": w.project.slug}),
    ),
    ("PATCH", "/api/v1/projects/{slug}/"): Rule(
        Role.ADMIN, 200, lambda w, u: ({"slug": w.project.slug}, {"description": "changed"})
    ),
    ("POST", "/api/v1/promotions/{id}/approve/"): Rule(
        Role.APPROVER, 200, lambda w, u: ({"id": w["promotion"].pk}, {"comment": "ok"})
    ),
    ("POST", "/api/v1/promotions/{id}/reject/"): Rule(
        Role.APPROVER, 200, lambda w, u: ({"id": w["promotion"].pk}, {"comment": "not yet"})
    ),
    ("POST", "/api/v1/releases/{id}/block/"): Rule(
        Role.APPROVER, 200, lambda w, u: ({"id": w["release"].pk}, {"reason": "CVE"})
    ),
    ("POST", "/api/v1/releases/{id}/deploy/"): Rule(
        Role.DEVELOPER,
        202,
        lambda w, u: ({"id": w["release"].pk}, {"environment": w["staging"].pk}),
    ),
    ("POST", "/api/v1/runs/"): Rule(
        Role.DEVELOPER,
        201,
        lambda w, u: _with_repository(w, {}, {"project": w.project.slug, "ref": "main"}),
        setup_writes=True,
    ),
    ("POST", "/api/v1/runs/{id}/cancel/"): Rule(
        Role.DEVELOPER, 200, lambda w, u: ({"id": w["active_run"].pk}, {})
    ),
    ("POST", "/api/v1/runs/{id}/rerun/"): Rule(
        Role.DEVELOPER,
        201,
        lambda w, u: _with_repository(w, {"id": w["run"].pk}, {}),
        setup_writes=True,
    ),
    ("POST", "/api/v1/silences/"): Rule(
        Role.DEVELOPER,
        201,
        lambda w, u: (
            {},
            {
                "project": w.project.slug,
                "matchers": [{"name": "service", "op": "=", "value": "api"}],
                "reason": "deploy",
                "ends_at": "2999-01-01T00:00:00Z",
            },
        ),
    ),
    ("POST", "/api/v1/silences/{id}/expire/"): Rule(
        Role.DEVELOPER, 200, lambda w, u: ({"id": w["silence"].pk}, {})
    ),
    ("POST", "/api/v1/system/ping/"): Rule(STAFF, 202, _p()),
    # Ingest endpoints refuse anyone but a developer (or the environment's ingest token) with
    # 403 before looking further; an empty body then is the 400 that proves the role passed.
    ("POST", "/api/v1/environments/{id}/observations/"): Rule(
        Role.DEVELOPER, 400, lambda w, u: ({"id": w["production"].pk}, {}), hidden=403
    ),
    ("POST", "/api/v1/environments/{id}/labels/"): Rule(
        Role.DEVELOPER, 400, lambda w, u: ({"id": w["production"].pk}, {}), hidden=403
    ),
    ("POST", "/api/v1/ingest-tokens/"): Rule(
        Role.ADMIN,
        201,
        lambda w, u: ({}, {"environment": w["production"].pk, "name": "batch scorer"}),
    ),
    ("POST", "/api/v1/ingest-tokens/{id}/revoke/"): Rule(
        Role.ADMIN, 200, lambda w, u: ({"id": w["ingest_token"].pk}, {})
    ),
    ("POST", "/api/v1/webhook-deliveries/{id}/redeliver/"): Rule(
        Role.DEVELOPER, 202, lambda w, u: ({"id": w["webhook_delivery"].pk}, {})
    ),
}


def _with_repository(world, params, body):
    """The project gets a repository (inside the try's savepoint): runs are then recorded,
    queued for a worker to read the spec (never, here: the savepoint is rolled back)."""
    world.project.repository_url = "https://git.example.com/churn.git"
    world.project.save(update_fields=["repository_url"])
    return params, body


def _linked(user):
    SlackIdentity.objects.update_or_create(
        user=user, defaults={"slack_user_id": f"U{user.pk:08d}", "team_id": "T012AB3CD"}
    )
    return {}, {}


def _write_operations(client) -> list[tuple[str, str]]:
    schema = client.get(reverse("schema"), {"format": "json"}).json()
    return sorted(
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in WRITE_METHODS
    )


def _fingerprint() -> str:
    """Every row of every model the product owns (API tokens aside: using one stamps it)."""
    digest = hashlib.sha256()
    models = [m for m in django_apps.get_models() if m.__module__.startswith("apps.")]
    for model in sorted([*models, get_user_model()], key=lambda m: m._meta.label):
        if model is ApiToken:
            continue
        rows = model._base_manager.order_by("pk").values_list()
        digest.update(model._meta.label.encode())
        digest.update(repr(list(rows)).encode())
    return digest.hexdigest()


def _allowed(rule: Rule, actor: str) -> bool:
    if rule.role == ANY_USER:
        return True
    if rule.role == STAFF or actor in ("no-member", "other-admin"):
        return False
    return ROLE_RANK[actor] >= ROLE_RANK[rule.role]


def _refusal(rule: Rule, actor: str, path: str) -> int:
    if rule.role == STAFF:
        return 403
    hidden = actor in ("no-member", "other-admin")
    return rule.hidden if hidden and "{" in path else 403


def test_every_write_operation_refuses_the_roles_below_its_rule(api, admin_user, capsys):
    project = project_create(name="Churn model", actor=admin_user)
    other = project_create(name="Other project", actor=admin_user)
    world = build_world(project, admin_user)
    users = {"no-member": UserFactory(username="no-member")}
    for role in ("viewer", "developer", "approver", "admin"):
        users[role] = UserFactory(username=f"rbac-{role}")
        membership_set(project=project, user=users[role], role=role, actor=admin_user)
    users["other-admin"] = UserFactory(username="other-admin")
    membership_set(project=other, user=users["other-admin"], role="admin", actor=admin_user)
    clients = {actor: api(user) for actor, user in users.items()}

    operations = _write_operations(api(admin_user))
    missing = [op for op in operations if op not in RULES]
    assert not missing, (
        "Write operations with no rule in tests/contract/test_rbac_matrix.py RULES — add "
        "one (the least role, a request that succeeds, its status): "
        + ", ".join(f"{m} {p}" for m, p in missing)
    )
    stale = [op for op in RULES if op not in operations]
    assert not stale, f"RULES for operations the schema no longer has: {stale}"

    before = _fingerprint()
    tally: Counter = Counter()
    wrong: list[str] = []
    for method, path in operations:
        rule = RULES[(method, path)]
        for actor in ACTORS:
            user = users[actor]
            with transaction.atomic():
                params, body = rule.request(world, user)
                baseline = _fingerprint() if rule.setup_writes else before
                url = path.format(**params)
                response = getattr(clients[actor], method.lower())(url, body, format="json")
                allowed = _allowed(rule, actor)
                expected = rule.ok if allowed else _refusal(rule, actor, path)
                changed = False if allowed else _fingerprint() != baseline
                transaction.set_rollback(True)
            tally["allowed" if allowed else "refused"] += 1
            tally[f"{actor}:{'allowed' if allowed else 'refused'}"] += 1
            if response.status_code != expected or changed:
                wrong.append(
                    f"{method} {path} as {actor}: {response.status_code} (expected {expected})"
                    + (", and it changed the database" if changed else "")
                    + f" {response.content[:200]!r}"
                )
    assert _fingerprint() == before, "a savepoint leaked"
    with capsys.disabled():
        print(
            f"\nRBAC matrix: {len(operations)} write operations × {len(ACTORS)} actors = "
            f"{tally['allowed'] + tally['refused']} tries: {tally['allowed']} allowed, "
            f"{tally['refused']} refused (database unchanged), {len(wrong)} wrong"
        )
        for actor in ACTORS:
            print(
                f"  {actor:12} allowed {tally[f'{actor}:allowed']:3}  "
                f"refused {tally[f'{actor}:refused']:3}"
            )
        for line in wrong:
            print(f"- {line}")
    assert not wrong, f"{len(wrong)} tries answered otherwise than the rule says (above)"
