"""The model registry at 10,000 versions: the registry list page, the compare page and the
lineage API through the Django test client, queries per request and p50/p95 ms, next to the
floor measured in the same run (a bare Django view rendering the same number of rows — one
page — from a plain ``values()`` query through the same middleware), and the ratio.

    .venv/bin/python bench/registry.py [--versions 10000] [--requests 200] [--stack embedded]

Goal: ≤ 10 queries per request, p95 < 100 ms.
"""

from _stack import parse_args, setup, time_pages


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        versions={"type": int, "default": 10_000},
        requests={"type": int, "default": 200},
    )
    setup(args, "registry")
    from django.db import connection
    from django.http import HttpResponse
    from django.template import engines
    from django.test import Client
    from django.test.utils import override_settings
    from django.urls import path

    from apps.projects.services import membership_set, project_create
    from apps.training.models import ModelAlias, ModelVersion
    from apps.training.services import model_version_register
    from apps.training.views import PAGE_SIZE
    from tests.factories import UserFactory

    admin = UserFactory(username="bench-admin", is_superuser=True, is_staff=True)
    project = project_create(name="Bench registry", actor=admin)
    lead = UserFactory(username="bench-lead")
    membership_set(project=project, user=lead, role="approver", actor=admin)
    first = model_version_register(
        project=project,
        run=None,
        name="churn",
        artifact_digest="sha256:first",
        metrics={"f1": 0.8, "loss": 0.3, "seed": 1},
    )
    ModelVersion.objects.bulk_create(
        (
            ModelVersion(
                project=project,
                name=("churn", "fraud", "ltv")[i % 3],
                version=i + 2,
                metrics={"f1": 0.5 + (i % 500) / 1000, "loss": 1 - (i % 500) / 1000},
                params={"seed": i},
                tags={"sklearn_version": "1.5.2"},
                artifact_digest=f"sha256:{i}",
            )
            for i in range(args.versions - 1)
        ),
        batch_size=2000,
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # what autovacuum does soon after a bulk load
            cursor.execute("ANALYZE")
    ModelAlias.objects.create(
        project=project,
        model_name="churn",
        environment=project.environments.get(name="production"),
        model_version=first,
    )
    ids = list(ModelVersion.objects.order_by("-pk").values_list("pk", flat=True)[:4])
    ids_q = ",".join(str(i) for i in [first.pk, *ids])

    template = engines["django"].from_string(
        "<table>{% for v in rows %}<tr><td>{{ v.name }} v{{ v.version }}</td>"
        "<td>{% for k, x in v.metrics.items %}{{ k }}={{ x }} {% endfor %}</td></tr>"
        "{% endfor %}</table>"
    )

    def floor(request):
        rows = list(
            ModelVersion.objects.filter(project=project)
            .order_by("-created")
            .values("name", "version", "metrics")[:PAGE_SIZE]
        )
        return HttpResponse(template.render({"rows": rows}))

    import controlplane.urls as real_urls

    class Urls:
        urlpatterns = [path("floor/", floor), *real_urls.urlpatterns]

    client = Client()
    client.force_login(lead)
    cases = {
        "floor (values(), same rows)": "/floor/",
        "registry list page": f"/p/{project.slug}/models/",
        "compare page (5 versions)": f"/p/{project.slug}/models/compare/?ids={ids_q}&metric=f1",
        "lineage API": f"/api/v1/model-versions/{first.pk}/lineage/",
    }
    with override_settings(ROOT_URLCONF=Urls, DEBUG=False, ALLOWED_HOSTS=["testserver"]):
        results = time_pages(client, cases, args.requests)
    base = results["floor (values(), same rows)"][1]
    print(f"{args.versions} versions, {args.requests} requests each, stack {args.stack}")
    print(f"{'':32} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8} {'p50 / floor':>11}")
    for name, (queries, p50, p95) in results.items():
        print(f"{name:32} {queries:>7} {p50:>8.1f} {p95:>8.1f} {p50 / base:>10.1f}×")
    worst = max(r[2] for n, r in results.items() if not n.startswith("floor"))
    most = max(r[0] for n, r in results.items() if not n.startswith("floor"))
    print(f"goal ≤ 10 queries, p95 < 100 ms: {'met' if most <= 10 and worst < 100 else 'NOT met'}")


if __name__ == "__main__":
    main()
