"""What runs where, for the CT loop: per environment the model version serving there, the
commit whose pipelines it runs and its schedules with their next fire time; and the
project's own (default branch) schedules."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.pipelines.models import Schedule
from apps.training.models import ModelAlias, ModelVersion

pytestmark = pytest.mark.django_db


def test_the_dashboard_shows_model_pipeline_version_and_next_run_per_environment(
    client, project, member
):
    production = project.environments.get(name="production")
    staging = project.environments.get(name="staging")
    champion = ModelVersion.objects.create(project=project, name="churn", version=3)
    ModelAlias.objects.create(
        project=project, model_name="churn", environment=production, model_version=champion
    )
    production.pipeline_commit_sha = "c0ffee" + "0" * 34
    production.save(update_fields=["pipeline_commit_sha"])
    last = timezone.now() - timedelta(seconds=30)
    Schedule.objects.create(
        project=project,
        name="retrain",
        pipeline="train",
        environment=production,
        every_seconds=3600,
        last_fire_at=last,
    )
    Schedule.objects.create(project=project, name="refresh", pipeline="features", cron="0 3 * * *")
    Schedule.objects.create(
        project=project,
        name="paused",
        pipeline="train",
        environment=staging,
        cron="* * * * *",
        paused=True,
    )
    client.force_login(member("viewer"))
    page = client.get(reverse("dashboard")).content.decode()
    assert "churn v3" in page and champion.get_absolute_url() in page
    assert 'pipelines of <span class="mono">c0ffee000000</span>' in page
    assert "train (retrain) next" in page  # about an hour from now
    assert '<span class="mono">refresh</span> → features, next' in page
    assert "(paused)" not in page  # a paused schedule runs nothing: not listed
    assert reverse("pipelines:pipelines", args=[project.slug]) in page
