"""Factories of the CM loop's rows, and ``drift_history``: a run of checks as the checker
would write them (columns with scores, thresholds and histograms), for the pages' tests."""

import hashlib
from datetime import timedelta

import factory
from django.utils import timezone

from apps.monitoring.choices import AlertSource, AlertStatus, CheckStatus, ColumnKind, Severity
from apps.monitoring.models import Alert, ColumnDrift, DriftCheck, RetrainRequest
from tests.factories import EnvironmentFactory


class DriftCheckFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DriftCheck

    environment = factory.SubFactory(EnvironmentFactory)
    window_end = factory.Sequence(lambda n: timezone.now() - timedelta(hours=n + 1))
    window_start = factory.LazyAttribute(lambda o: o.window_end - timedelta(hours=1))
    rows = 1000
    reference_rows = 5000
    status = CheckStatus.OK


class ColumnDriftFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ColumnDrift

    check_run = factory.SubFactory(DriftCheckFactory)
    column = factory.Sequence(lambda n: f"f{n}")
    kind = ColumnKind.NUMERIC
    test = "ks"
    score = 0.5
    threshold = 0.05
    drifted = False
    histogram = factory.LazyFunction(
        lambda: {
            "edges": [0.0, 1.0, 2.0, 3.0],
            "reference": [0.25, 0.5, 0.25],
            "current": [0.2, 0.5, 0.3],
        }
    )


def _fingerprint(labels: dict) -> str:
    return hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()


class AlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Alert

    environment = factory.SubFactory(EnvironmentFactory)
    project = factory.LazyAttribute(lambda o: o.environment.project)
    source = AlertSource.CONTROLPLANE
    rule = "dataset_drift"
    labels = factory.LazyAttribute(
        lambda o: {
            "alertname": o.rule,
            "project": o.environment.project.slug,
            "environment": o.environment.name,
        }
    )
    fingerprint = factory.LazyAttribute(lambda o: _fingerprint(o.labels))
    severity = Severity.WARNING
    status = AlertStatus.FIRING
    summary = factory.LazyAttribute(lambda o: f"{o.rule} in {o.environment.name}")


class RetrainRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RetrainRequest

    drift_check = factory.SubFactory(DriftCheckFactory)
    environment = factory.LazyAttribute(lambda o: o.drift_check.environment)


FEATURES = (
    ("tenure", ColumnKind.NUMERIC, "ks", 0.05),
    ("monthly_charges", ColumnKind.NUMERIC, "wasserstein", 0.1),
    ("plan", ColumnKind.CATEGORICAL, "psi", 0.2),
)


def drift_history(
    environment, *, checks=6, drift_from=4, features=FEATURES, model_version=None, start=None
):
    """``checks`` hourly checks ending now, oldest first; from the ``drift_from``-th on,
    ``tenure`` and ``plan`` drift (scores cross their thresholds) and the dataset drifts.
    Performance falls as drift grows. ``start``: end that long before now instead. Returns
    the checks, oldest first."""
    now = timezone.now().replace(second=0, microsecond=0) - (start or timedelta(0))
    made = []
    for i in range(checks):
        drifting = i >= drift_from
        end = now - timedelta(hours=checks - 1 - i)
        drifted = [name for name, *_ in features if drifting and name in ("tenure", "plan")]
        check = DriftCheckFactory(
            environment=environment,
            model_version=model_version,
            window_start=end - timedelta(hours=1),
            window_end=end,
            status=CheckStatus.DRIFT if drifted else CheckStatus.OK,
            dataset_drift=len(drifted) / len(features) >= 0.5,
            drift_share=len(drifted) / len(features),
            drift_share_threshold=0.5,
            drifted_columns=drifted,
            performance={"labelled_rows": 400, "accuracy": 0.9 - 0.05 * i, "f1": 0.85 - 0.06 * i},
        )
        for name, kind, test, threshold in features:
            moved = name in drifted
            if test == "ks":  # a p-value: drift below the threshold
                score = 0.001 if moved else 0.4 + 0.01 * i
            else:  # a distance: drift above it
                score = threshold * (3 if moved else 0.3)
            if kind == ColumnKind.CATEGORICAL:
                histogram = {
                    "categories": ["basic", "plus", "pro"],
                    "reference": [0.5, 0.3, 0.2],
                    "current": [0.2, 0.3, 0.5] if moved else [0.48, 0.32, 0.2],
                }
            else:
                histogram = {
                    "edges": [0, 10, 20, 30, 40, 50],
                    "reference": [0.1, 0.2, 0.4, 0.2, 0.1],
                    "current": [0.02, 0.08, 0.2, 0.3, 0.4]
                    if moved
                    else [0.1, 0.2, 0.38, 0.22, 0.1],
                }
            ColumnDriftFactory(
                check_run=check,
                column=name,
                kind=kind,
                test=test,
                score=score,
                threshold=threshold,
                drifted=moved,
                missing_share=0.01 * i,
                out_of_range=7 if moved and kind == ColumnKind.NUMERIC else 0,
                new_categories=1 if moved and kind == ColumnKind.CATEGORICAL else 0,
                histogram=histogram,
            )
        made.append(check)
    return made
