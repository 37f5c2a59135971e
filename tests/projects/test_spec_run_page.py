"""A run whose spec uses keys that do nothing yet says so on its page, with each key's line."""

import pytest
from django.utils.html import escape

from apps.pipelines import services
from apps.pipelines.choices import RunStatus
from apps.pipelines.commits import Commit
from tests.pipelines.gitrepo import Repo

pytestmark = pytest.mark.django_db

UNUSED_RETRAIN_SPEC = """version: 1
jobs:
  unit: {kind: test, script: ["echo ok"]}
monitor:
  reference: data/reference.csv
  retrain: {cooldown: 1h}
"""
PLAIN_SPEC = """version: 1
jobs:
  unit: {kind: test, script: ["echo ok"]}
monitor:
  reference: data/reference.csv
"""


def _prepared_run(project, repo: Repo, spec: str):
    repo.commit("spec", {".controlplane.yml": spec})
    project.repository_url = repo.url
    project.save()
    run = services.run_request(project=project, actor="t", commit=Commit(sha=repo.head, ref="main"))
    run = services.run_prepare(run_id=run.pk)  # what the prepare_run task does on a worker
    assert run.status != RunStatus.FAILED, run.error_message
    return run


def test_the_run_page_warns_about_a_retrain_block_nothing_uses(
    project, admin_user, client, tmp_path
):
    run = _prepared_run(project, Repo(tmp_path), UNUSED_RETRAIN_SPEC)
    warning = (
        "`monitor.retrain` (line 6) is accepted but not acted on yet: on_drift is not "
        "'retrain', so a drift starts no run"
    )
    assert run.spec["warnings"] == [warning]
    client.force_login(admin_user)
    page = client.get(run.get_absolute_url()).content.decode()
    assert "The spec uses keys that do nothing yet" in page
    assert escape(warning) in page


def test_a_run_whose_spec_uses_only_what_works_shows_no_warning_box(  # monitor included
    project, admin_user, client, tmp_path
):
    run = _prepared_run(project, Repo(tmp_path), PLAIN_SPEC)
    assert run.spec["warnings"] == []
    client.force_login(admin_user)
    page = client.get(run.get_absolute_url()).content.decode()
    assert f"#{run.number}" in page and "do nothing yet" not in page
