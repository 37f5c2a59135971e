"""The environment's monitoring page, the environment page's monitoring card and the
promotion page's drift section (apps/monitoring/templatetags/monitoring_ui.py)."""

import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.monitoring import selectors
from apps.monitoring.choices import AlertStatus
from apps.monitoring.models import ServiceHealth
from apps.monitoring.views import alerts_url
from apps.pipelines.choices import Trigger
from apps.releases.services import promotion_request, release_create
from tests.factories import RunFactory, UserFactory

from .factories import (
    AlertFactory,
    ColumnDriftFactory,
    DriftCheckFactory,
    RetrainRequestFactory,
    drift_history,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(project):
    return project.environments.get(name="production")


def url_of(environment):
    return reverse(
        "monitoring:environment",
        kwargs={"slug": environment.project.slug, "name": environment.name},
    )


def page(client, user, url, status=200):
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == status
    return response.content.decode()


def chart_data(html: str) -> dict:
    match = re.search(r'<script id="monitoring-data" type="application/json">(.*?)</script>', html)
    assert match, "the page embeds the charts' data"
    return json.loads(match.group(1))


def row_of(html: str, feature: str) -> str:
    match = re.search(rf'<tr data-feature="{feature}">(.*?)</tr>', html, re.S)
    assert match, f"a table row for {feature}"
    return re.sub(r"<[^>]+>", " ", match.group(1))


def test_a_viewer_sees_the_latest_checks_features_and_the_charts_data(client, production, member):
    checks = drift_history(production, checks=6, drift_from=4)
    html = page(client, member("viewer"), url_of(production))

    # The latest check: drift in tenure and plan, 2 of 3 features, dataset drift.
    assert "dataset drift" in html
    assert "2 of 3" in html and "tenure, plan" in html
    # The per-feature table: test, score, threshold, verdict, missing, out of range, new.
    tenure = row_of(html, "tenure").split()
    assert tenure[:3] == ["tenure", "Numeric", "ks"]
    assert "0.001" in tenure and "0.05" in tenure and "drift" in tenure
    assert "5 %" in " ".join(tenure)  # missing share 0.05
    assert "7" in tenure  # out of range
    plan = row_of(html, "plan").split()
    assert plan[:3] == ["plan", "Categorical", "psi"]
    assert "0.6" in plan and "0.2" in plan and "drift" in plan and plan[-1] == "1"
    charges = row_of(html, "monthly_charges").split()
    assert "ok" in charges and "0.03" in charges and charges[-1] == "—"

    # What the charts draw: one x per check, a score line per feature, share, performance.
    data = chart_data(html)
    assert data["t"] == [int(c.window_end.timestamp()) for c in checks]
    assert data["drift_share"][-1] == pytest.approx(2 / 3) and data["drift_share"][0] == 0
    assert data["drift_share_threshold"] == 0.5
    assert data["features"]["tenure"]["score"][-1] == 0.001
    assert data["features"]["tenure"]["score"][0] == pytest.approx(0.4)
    assert data["features"]["tenure"]["threshold"] == 0.05
    assert data["features"]["plan"]["drifted"] == [False] * 4 + [True] * 2
    assert data["performance"]["f1"][-1] == pytest.approx(0.85 - 0.3)
    assert "labelled_rows" not in data["performance"]
    # Reference vs current histograms of the latest check, labelled by bin or category.
    assert data["histograms"]["plan"]["labels"] == ["basic", "plus", "pro"]
    assert data["histograms"]["plan"]["current"] == [0.2, 0.3, 0.5]
    assert data["histograms"]["tenure"]["labels"][0] == "0…10"
    assert len(data["histograms"]["tenure"]["reference"]) == 5
    # The chart library is served from here, not a CDN.
    assert "monitoring/vendor/uplot-1.6.32/uPlot.iife.min.js" in html
    assert "https://" not in re.sub(r'href="https?://[^"]*"', "", html.split("<main>")[1])
    for c in ("share", "performance", "feature", "histogram"):
        assert f'data-chart="{c}"' in html


def test_the_vendored_chart_library_and_its_licence_are_static_files(client, admin_user):
    from django.contrib.staticfiles import finders

    for name in ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE"):
        path = finders.find(f"monitoring/vendor/uplot-1.6.32/{name}")
        assert path, name
    assert "MIT License" in open(finders.find("monitoring/vendor/uplot-1.6.32/LICENSE")).read()
    assert finders.find("monitoring/monitoring.js")


def test_a_check_without_histograms_or_scores_still_shows(client, production, member):
    check = DriftCheckFactory(environment=production, status="drift", drifted_columns=["x"])
    ColumnDriftFactory(check_run=check, column="x", histogram={}, score=None, drifted=True)
    ColumnDriftFactory(
        check_run=check,
        column="y",
        histogram={"edges": [0, 1], "reference": [0.5, 0.5], "current": [1.0]},  # malformed
    )
    html = page(client, member("viewer"), url_of(production))
    assert html.count("No histogram stored for this check.") == 2
    assert "—" in row_of(html, "x")
    data = chart_data(html)
    assert data["features"]["x"]["score"] == [None]
    assert data["histograms"] == {}
    assert "No labels posted yet" in html


def test_no_check_yet_says_what_is_needed(client, production, member):
    html = page(client, member("viewer"), url_of(production))
    assert "No drift check has run for production yet" in html
    assert 'data-chart="' not in html


def test_the_top_cards_poll_and_a_newer_check_is_announced_not_swapped_in(
    client, production, member
):
    now = timezone.now()
    first = DriftCheckFactory(
        environment=production, status="ok", window_end=now - timedelta(hours=1)
    )
    html = page(client, member("viewer"), url_of(production))
    # The page polls itself for the cards, naming the check it was opened on.
    assert f'hx-get="{url_of(production)}?shown={first.pk}"' in html and 'hx-select="#live"' in html
    assert "newer-check" not in html
    assert "newer-check" not in page(
        client, member("viewer"), f"{url_of(production)}?shown={first.pk}"
    )

    newer = DriftCheckFactory(environment=production, status="drift", window_end=now)
    polled = page(client, member("viewer"), f"{url_of(production)}?shown={first.pk}")
    live = re.search(
        r'<div id="live".*?<section class="card" aria-labelledby="latest-title"', polled, re.S
    )
    assert live and 'id="newer-check"' in live.group(0), "the live region says a newer check ran"
    # The next poll still compares with the check the charts show.
    assert f"?shown={first.pk}" in polled and f"?shown={newer.pk}" not in polled
    # A malformed ``shown`` is ignored, not a 500.
    assert "newer-check" not in page(client, member("viewer"), f"{url_of(production)}?shown=x")


def test_only_members_see_it(client, production, project):
    url = url_of(production)
    assert client.get(url).status_code == 302  # to the login page
    page(client, UserFactory(username="outsider"), url, status=404)
    other = reverse("monitoring:environment", kwargs={"slug": project.slug, "name": "nowhere"})
    page(client, UserFactory(username="root"), other, status=404)


def test_alerts_and_service_health(client, production, member, project):
    staging = project.environments.get(name="staging")
    AlertFactory(environment=production, rule="dataset_drift", summary="Drift in tenure, plan")
    AlertFactory(environment=production, rule="service_down", value=1.0)
    old = AlertFactory(
        environment=production,
        rule="error_rate",
        status=AlertStatus.RESOLVED,
        value=0.12,
        starts_at=timezone.now() - timedelta(hours=3),
        resolved_at=timezone.now() - timedelta(hours=2),
    )
    AlertFactory(environment=staging, rule="latency_p95")  # another environment's
    html = page(client, member("viewer"), url_of(production))
    assert "2 firing" in html
    assert "Drift in tenure, plan" in html
    assert f'id="alert-{old.pk}"' in html
    health = html.split('id="service-health"')[1].split("</section>")[0]
    items = {
        rule: state
        for state, rule in re.findall(
            r'badge s-\w+"[^>]*>(\w+)</span> <span class="mono">(\w+)</span>', health
        )
    }
    assert items == {
        "service_down": "firing",
        "error_rate": "quiet",
        "latency_p95": "quiet",
        "cpu": "quiet",
        "memory": "quiet",
    }
    assert "0.12" in health  # the resolved alert's last value
    assert "Not probed yet." in health
    assert f'id="alerts-link" href="{alerts_url(project=project)}' in html


def test_queries_do_not_grow_with_checks_or_features(
    client, production, member, django_assert_max_num_queries
):
    features = [(f"f{i}", "numeric", "ks", 0.05) for i in range(12)]
    drift_history(production, checks=40, features=features)
    for i in range(3):
        AlertFactory(environment=production, rule=f"rule{i}")
    # Seven reads of the selector (checks, scores, latest columns, alerts, the probe, service
    # rules, retrains); the rest is the session, the user and the nav's approvals badge.
    with django_assert_max_num_queries(7):
        data = selectors.environment_monitoring(environment=production)
        assert len(data["checks"]) == 40 and len(data["series"]["features"]) == 12
    user = member("viewer")
    client.force_login(user)
    with django_assert_max_num_queries(14) as small:
        client.get(url_of(production))
    # Twice the checks, features and alerts: not one query more.
    more = [(f"g{i}", "categorical", "psi", 0.2) for i in range(12)]
    drift_history(production, checks=60, features=features + more, start=timedelta(days=3))
    for i in range(3):
        AlertFactory(environment=production, rule=f"other{i}")
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(url_of(production))
    assert len(chart_data(response.content.decode())["t"]) == selectors.SERIES_CHECKS


def test_the_environment_page_links_to_monitoring(client, production, member):
    drift_history(production, checks=2, drift_from=1)
    AlertFactory(environment=production)
    html = page(client, member("viewer"), production.get_absolute_url())
    card = html.split('id="monitoring-card"')[1].split("</section>")[0]
    assert f'href="{url_of(production)}"' in card
    assert "drift" in card and "tenure, plan" in card
    assert "1 alert firing" in card


def _release_of(project, admin_user, version, run=None):
    return release_create(
        project=project,
        version=version,
        commit_sha="abc1234",
        actor=admin_user,
        pipeline_run=run,
    )


def test_promotion_of_a_drift_retrain_shows_the_drift_that_asked_for_it(
    client, project, production, admin_user, member, django_assert_max_num_queries
):
    checks = drift_history(production, checks=5, drift_from=3)
    run = RunFactory(project=project, trigger=Trigger.MONITOR, trigger_detail="drift: tenure, plan")
    RetrainRequestFactory(drift_check=checks[3], run=run)
    release = _release_of(project, admin_user, "r9-retrain", run)
    promotion = promotion_request(release=release, environment=production, actor=admin_user)

    with django_assert_max_num_queries(5):
        selectors.promotion_drift(release=release, environment=production)
    html = page(client, member("approver"), promotion.get_absolute_url())
    drift = html.split('id="drift-title"')[1].split('id="build-title"')[0]
    assert "This release comes from a drift retrain" in drift
    assert f"run #{run.number}" in drift and "drift: tenure, plan" in drift
    window = drift.split('id="drift-window"')[1].split("</dd>")[0]
    assert checks[3].window_start.isoformat() in window
    cause = re.sub(r"<[^>]+>", " ", drift.split('id="drift-cause"')[1].split("</table>")[0])
    assert re.search(r"tenure\s+ks\s+0\.001\s+0\.05\s+drift", cause)
    assert re.search(r"plan\s+psi\s+0\.6\s+0\.2\s+drift", cause)
    assert re.search(r"monthly_charges\s+wasserstein\s+0\.03\s+0\.1\s+ok", cause)
    # The latest check of production, and the link to its monitoring page.
    latest = drift.split('id="drift-latest"')[1]
    assert "tenure" in latest and f'href="{url_of(production)}"' in latest


def test_promotion_from_monitoring_without_recorded_evidence(
    client, project, production, admin_user, member
):
    run = RunFactory(project=project, trigger=Trigger.MONITOR, trigger_detail="drift: f1")
    release = _release_of(project, admin_user, "r10", run)
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    html = page(client, member("approver"), promotion.get_absolute_url())
    assert "This release comes from a drift retrain" in html and "drift: f1" in html
    assert "The drift that asked for it is not recorded." in html
    assert "No drift check has run for production yet." in html


def test_an_ordinary_release_shows_only_the_latest_check(
    client, project, production, admin_user, member
):
    drift_history(production, checks=2, drift_from=5)  # no drift
    release = _release_of(project, admin_user, "r11", RunFactory(project=project))
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    html = page(client, member("approver"), promotion.get_absolute_url())
    assert "drift retrain" not in html
    drift = html.split('id="drift-latest"')[1].split("</div>")[0]
    assert "badge s-ok" in drift and "1,000 rows" in drift


def test_the_service_health_panel_shows_the_latest_probe(client, production, member):
    ServiceHealth.objects.create(
        environment=production,
        checked_at=timezone.now() - timedelta(seconds=30),
        up=True,
        url="http://127.0.0.1:9/",
        requests=400,
        error_rate=0.0125,
        p95_ms=182.5,
        cpu=0.42,
        memory_mb=311.4,
    )
    AlertFactory(environment=production, rule="latency_p95", value=612.0)
    html = page(client, member("viewer"), url_of(production))
    probe = re.sub(r"<[^>]+>", " ", html.split('id="probe"')[1].split("</dl>")[0])
    probe = " ".join(probe.split())
    assert "up probed 30 seconds ago" in probe
    assert "1.25 % of 400 requests" in probe
    assert "182.5 ms" in probe
    assert "42 % of a core, 311 MB" in probe
    assert "latency_p95" in html.split('id="service-health"')[1].split("</section>")[0]


def test_the_promotion_reads_the_evidence_the_retrain_kept(
    client, project, production, admin_user, member
):
    checks = drift_history(production, checks=3, drift_from=2)
    run = RunFactory(project=project, trigger=Trigger.MONITOR, trigger_detail="drift: tenure")
    start, end = timezone.now() - timedelta(hours=5), timezone.now() - timedelta(hours=4)
    RetrainRequestFactory(
        drift_check=checks[2],
        run=run,
        # The snapshot at retrain time: it wins over the check's rows as they are now.
        evidence={
            "window": [start.isoformat(), end.isoformat()],
            "rows": 2345,
            "drift_share": 0.25,
            "drift_share_threshold": 0.2,
            "drifted_columns": ["tenure"],
            "columns": [
                {
                    "column": "tenure",
                    "test": "ks",
                    "score": 0.0021,
                    "threshold": 0.05,
                    "drifted": True,
                },
                {
                    "column": "plan",
                    "test": "psi",
                    "score": 0.11,
                    "threshold": 0.2,
                    "drifted": False,
                },
            ],
            "dataset": {"name": "features", "version": 4, "rows_added": 480},
        },
    )
    release = _release_of(project, admin_user, "r13", run)
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    html = page(client, member("approver"), promotion.get_absolute_url())
    drift = html.split('id="drift-retrain"')[1].split('id="drift-latest"')[0]
    assert start.isoformat() in drift and "2,345 rows" in drift
    assert "1 of 2 features (25 %; dataset drift at 20 %)" in drift
    cause = re.sub(r"<[^>]+>", " ", drift.split('id="drift-cause"')[1].split("</table>")[0])
    assert re.search(r"tenure\s+ks\s+0\.0021\s+0\.05\s+drift", cause)
    assert re.search(r"plan\s+psi\s+0\.11\s+0\.2\s+ok", cause)
    assert "monthly_charges" not in cause
    assert "features v4" in drift and "480 labelled rows" in drift


def test_the_engines_own_results_are_drawn(client, production, member):
    """A check written from the drift engine's results (docs/drift.md): a shifted numeric
    column with values beyond the reference's range, a categorical one with a new category."""
    import numpy as np

    from apps.monitoring.drift import ColumnConfig, dataset_drift

    rng = np.random.default_rng(7)
    reference = {
        "tenure": rng.normal(30, 5, 2000),
        "plan": rng.choice(np.array(["basic", "plus", "pro"], dtype=object), 2000),
    }
    current = {
        "tenure": rng.normal(45, 5, 800),  # far beyond the reference's max for many rows
        "plan": rng.choice(np.array(["basic", "pro", "enterprise"], dtype=object), 800),
    }
    result = dataset_drift(
        reference,
        current,
        [ColumnConfig("tenure", "numeric"), ColumnConfig("plan", "categorical")],
    )
    check = DriftCheckFactory(
        environment=production,
        status="drift" if result.dataset_drift else "ok",
        dataset_drift=result.dataset_drift,
        drift_share=result.drift_share,
        drifted_columns=result.drifted_columns,
    )
    for column in result.columns:
        ColumnDriftFactory(check_run=check, **column.as_dict())
    html = page(client, member("viewer"), url_of(production))

    tenure_result = next(c for c in result.columns if c.column == "tenure")
    assert tenure_result.drifted and tenure_result.out_of_range > 0
    tenure = row_of(html, "tenure")
    assert "drift" in tenure and f"{tenure_result.out_of_range:,}" in tenure
    plan = row_of(html, "plan")
    assert "enterprise" in plan  # the new category, named
    histograms = chart_data(html)["histograms"]
    # 20 bins between the reference's min and max, and the share of current rows above it.
    assert len(histograms["tenure"]["labels"]) == 21
    assert histograms["tenure"]["labels"][-1].startswith("> ")
    assert histograms["tenure"]["current"][-1] == pytest.approx(
        tenure_result.histogram["above"]["current"]
    )
    assert sum(histograms["tenure"]["current"]) == pytest.approx(1.0, abs=1e-3)
    assert set(histograms["plan"]["labels"]) == {"basic", "plus", "pro", "enterprise"}
    assert histograms["plan"]["new"] == ["enterprise"]


def test_alerts_link_to_their_pages_and_a_developer_may_silence_a_firing_one(
    client, production, member, project
):
    firing = AlertFactory(environment=production, rule="dataset_drift")
    resolved = AlertFactory(
        environment=production, rule="column_drift", status=AlertStatus.RESOLVED
    )
    list_url = reverse("alerts:list", kwargs={"slug": project.slug})
    silence_url = reverse("alerts:silence-new", kwargs={"slug": project.slug})
    html = page(client, member("developer"), url_of(production))
    assert f'href="{list_url}?environment={production.pk}&amp;status="' in html
    for a in (firing, resolved):
        detail = reverse("alerts:detail", kwargs={"slug": project.slug, "pk": a.pk})
        assert f'href="{detail}"' in html
    assert f'href="{silence_url}?alert={firing.pk}"' in html
    assert f"?alert={resolved.pk}" not in html  # a resolved alert needs no silence
    # A viewer may not silence (the form refuses them): no button.
    html = page(client, member("viewer"), url_of(production))
    assert silence_url not in html
    # The link shows production's alerts, every status.
    listed = page(client, member("viewer", "v2"), f"{list_url}?environment={production.pk}&status=")
    assert f'id="alert-{firing.pk}"' in listed and f'id="alert-{resolved.pk}"' in listed
