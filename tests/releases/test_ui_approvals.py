"""The approvals inbox, the nav badge and the promotion page a team lead decides on."""

import shutil
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.core.exceptions import PermissionDeniedError
from apps.pipelines.git import mirror_path, mirror_update
from apps.projects.services import project_create
from apps.releases.choices import DeploymentStatus
from apps.releases.models import Promotion
from apps.releases.services import promotion_approve, promotion_request, release_create
from tests.factories import DeploymentFactory, UserFactory
from tests.pipelines.gitrepo import Repo

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_mirror(project):
    # Primary keys restart with each test: a mirror left by another test would be this
    # project's.
    shutil.rmtree(mirror_path(project), ignore_errors=True)


@pytest.fixture
def production(project):
    return project.environments.get(name="production")


@pytest.fixture
def staging(project):
    env = project.environments.get(name="staging")
    env.auto_deploy, env.required_approvals = False, 2
    env.save()
    return env


def _release(project, version, actor, sha="abc1234", **fields):
    return release_create(project=project, version=version, commit_sha=sha, actor=actor, **fields)


def _serving(environment, release):
    return DeploymentFactory(
        release=release,
        environment=environment,
        status=DeploymentStatus.SUCCEEDED,
        started_at=timezone.now() - timedelta(minutes=5),
        finished_at=timezone.now() - timedelta(minutes=4),
    )


def _page(client, user, url):
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


# --------------------------------------------------------------------------- inbox


def test_inbox_lists_only_promotions_the_user_may_decide_oldest_deadline_first(
    client, project, production, staging, member, admin_user
):
    lead = member("approver", "lead")
    other_approver = member("approver", "second")
    # Lead asked for this one: listed, but someone else must approve it.
    own = promotion_request(
        release=_release(project, "r1-own", admin_user), environment=production, actor=lead
    )
    # Requested by admin, one approval of two already: lead may approve.
    waiting = promotion_request(
        release=_release(project, "r2-wait", admin_user), environment=staging, actor=admin_user
    )
    promotion_approve(promotion=waiting, user=other_approver)
    Promotion.objects.filter(pk=own.pk).update(expires_at=timezone.now() + timedelta(hours=1))
    Promotion.objects.filter(pk=waiting.pk).update(expires_at=timezone.now() + timedelta(hours=5))
    # An admin-only environment: the approver role is not enough, so it is not listed.
    dev = project.environments.get(name="dev")
    dev.approver_role = "admin"
    dev.save()
    promotion_request(
        release=_release(project, "r3-admin-only", admin_user), environment=dev, actor=admin_user
    )
    # Another project where lead is only a viewer: not listed.
    elsewhere = project_create(name="Elsewhere", actor=admin_user)
    from apps.projects.services import membership_set

    membership_set(project=elsewhere, user=lead, role="viewer", actor=admin_user)
    promotion_request(
        release=_release(elsewhere, "r9-elsewhere", admin_user),
        environment=elsewhere.environments.get(name="production"),
        actor=admin_user,
    )

    page = _page(client, lead, reverse("approvals"))

    assert "r1-own" in page and "r2-wait" in page
    assert "r3-admin-only" not in page and "r9-elsewhere" not in page
    assert page.index("r1-own") < page.index("r2-wait")  # closest deadline first
    assert "You requested this promotion; someone else must approve it." in page
    assert "1 of 2" in page  # staging: one approval of the two it needs
    assert page.count("Review and decide") == 1  # only r2-wait
    assert 'href="/approvals/"' in page


def test_inbox_is_empty_for_a_developer(client, project, production, member, admin_user):
    promotion_request(
        release=_release(project, "r1-pending", admin_user),
        environment=production,
        actor=admin_user,
    )
    page = _page(client, member("developer"), reverse("approvals"))
    # A version no CSRF token can contain by chance (a bare "r1" sometimes did).
    assert "r1-pending" not in page
    assert "Nothing waits for your decision." in page


def test_inbox_shows_the_commit_author_cannot_approve(
    client, project, production, member, admin_user, django_capture_on_commit_callbacks
):
    from apps.pipelines.commits import Commit
    from apps.pipelines.services import run_create

    author = member("approver", "author")
    with django_capture_on_commit_callbacks(execute=False):
        run = run_create(
            project=project,
            actor=admin_user,
            commit=Commit(author_email=author.email),
            jobs=[{"name": "t", "script": ["true"]}],
        )
    promotion_request(
        release=_release(project, "r5", admin_user, pipeline_run=run),
        environment=production,
        actor=admin_user,
    )
    page = _page(client, author, reverse("approvals"))
    assert "You wrote this commit; someone else must approve it." in page
    assert "Review and decide" not in page


def test_nav_badge_counts_what_waits_for_this_users_decision(
    client, project, production, staging, member, admin_user
):
    lead = member("approver", "lead")
    promotion_request(
        release=_release(project, "r1", admin_user), environment=production, actor=admin_user
    )
    decided = promotion_request(
        release=_release(project, "r2", admin_user), environment=staging, actor=admin_user
    )
    promotion_approve(promotion=decided, user=lead)
    page = _page(client, lead, reverse("dashboard"))
    assert '1<span class="visually-hidden"> waiting for your decision</span>' in page
    page = _page(client, member("viewer"), reverse("dashboard"))
    assert "waiting for your decision" not in page


# --------------------------------------------------------------------------- promotion page


def test_promotion_page_shows_the_refusal_the_service_would_give(
    client, project, production, member, admin_user
):
    promotion = promotion_request(
        release=_release(project, "r1", admin_user), environment=production, actor=admin_user
    )
    viewer = member("viewer")
    page = _page(client, viewer, promotion.get_absolute_url())
    with pytest.raises(PermissionDeniedError) as refused:
        promotion_approve(promotion=promotion, user=viewer)
    assert refused.value.message in page
    assert 'value="approve"' not in page
    # Someone who may decide gets the form.
    page = _page(client, member("approver"), promotion.get_absolute_url())
    assert 'value="approve"' in page and 'value="reject"' in page


def test_promotion_page_shows_decisions_and_who_already_decided(
    client, project, staging, member, admin_user
):
    promotion = promotion_request(
        release=_release(project, "r1", admin_user), environment=staging, actor=admin_user
    )
    first = member("approver", "first")
    promotion_approve(promotion=promotion, user=first, comment="metrics ok")
    page = _page(client, first, promotion.get_absolute_url())
    assert "metrics ok" in page and "Browser" in page
    assert "1 of 2" in page
    assert "You have already decided on this promotion (Approve)." in page
    assert 'value="approve"' not in page


def test_promotion_page_shows_evidence_and_metrics_against_production(
    client, project, production, member, admin_user
):
    in_production = _release(
        project,
        "r10-prod",
        admin_user,
        evidence={"model": {"metrics": {"auc": 0.89, "rmse": 1.5}}},
    )
    _serving(production, in_production)
    candidate = _release(
        project,
        "r12-new",
        admin_user,
        image_ref="registry.local/churn:r12",
        image_digest="sha256:feedface",
        bundle_digest="sha256:b0b0",
        evidence={
            "run": 12,
            "tests": {
                "unit": {"tests": 41, "passed": 40, "failures": 1, "errors": 0, "skipped": 0}
            },
            "reproducibility": {
                "reproduce": {
                    "passed": True,
                    "max_abs_diff": 0.0004,
                    "rows_outside": 0,
                    "rows_compared": 500,
                    "tolerance": 0.001,
                }
            },
            "model": {"metrics": {"auc": 0.91, "accuracy": 0.8}},
        },
    )
    promotion = promotion_request(release=candidate, environment=production, actor=admin_user)
    page = _page(client, member("approver"), promotion.get_absolute_url())

    assert "sha256:feedface" in page and "registry.local/churn:r12" in page
    assert "sha256:b0b0" in page
    assert "unit" in page and ">40<" in page  # tests passed
    assert "reproduce" in page and "0.0004" in page and "0 of 500" in page
    assert "against r10-prod" in page
    assert "+0.0200" in page  # auc 0.91 against 0.89
    assert "accuracy" in page and "rmse" in page  # metrics of either release
    assert "No drift check has run for production yet." in page  # monitoring_ui tag
    # No repository: the page says so instead of failing.
    assert "Commits cannot be shown" in page


def test_promotion_page_shows_seeds_versions_and_hashes_as_parameters_not_metrics(
    client, project, production, member, admin_user
):
    recorded = {
        "accuracy": 0.81,
        "roc_auc": 0.9,
        "seed": 42,
        "n_train": 4000,
        "sklearn_version": "1.5.2",
        "dataset_sha256": "9f86d081884c7d65",
        "model": "churn",
    }
    _serving(
        production,
        _release(project, "r1-prod", admin_user, evidence={"model": {"metrics": {**recorded}}}),
    )
    candidate = _release(
        project,
        "r2-new",
        admin_user,
        evidence={"model": {"metrics": {**recorded, "accuracy": 0.83, "seed": 7}}},
    )
    promotion = promotion_request(release=candidate, environment=production, actor=admin_user)
    page = _page(client, member("approver"), promotion.get_absolute_url())
    metrics = page[page.index('id="metrics-title"') : page.index('id="parameters-title"')]
    parameters = page[page.index('id="parameters-title"') : page.index('id="drift-title"')]
    assert "accuracy" in metrics and "roc_auc" in metrics and "+0.0200" in metrics
    for name in ("seed", "n_train", "sklearn_version", "dataset_sha256", "model"):
        assert f'<td class="mono">{name}</td>' not in metrics
        assert f'<td class="mono">{name}</td>' in parameters
    for value in ("seed", "n_train", "sklearn_version", "1.5.2", "9f86d081884c7d65", "churn"):
        assert value in parameters
    assert ">7<" in parameters and ">42<" in parameters  # this release's seed and production's
    assert "-35" not in page  # a seed is not a change to judge


def test_promotion_page_without_metrics_says_so(client, project, production, admin_user):
    promotion = promotion_request(
        release=_release(project, "r1", admin_user), environment=production, actor=admin_user
    )
    page = _page(client, admin_user, promotion.get_absolute_url())
    assert "No model metrics recorded." in page
    assert "No test results recorded." in page


def test_promotion_page_lists_the_commits_since_production(
    client, tmp_path, project, production, member, admin_user
):
    repo = Repo(tmp_path)
    first = repo.head
    repo.commit("Tune the learning rate", {"model/NOTES.md": "lr 0.05\n"})
    head = repo.commit("Add a feature: tenure in months", {"model/NOTES.md": "lr 0.05, tenure\n"})
    project.repository_url = repo.url
    project.save()
    mirror_update(project)
    _serving(production, _release(project, "r1-first", admin_user, sha=first))
    promotion = promotion_request(
        release=_release(project, "r3-head", admin_user, sha=head),
        environment=production,
        actor=admin_user,
    )

    page = _page(client, member("approver"), promotion.get_absolute_url())

    assert "since" in page and "r1-first" in page
    assert "Tune the learning rate" in page
    assert "Add a feature: tenure in months" in page
    assert "Initial commit of the churn model" not in page  # already in production
    assert "Ada Author" in page
    assert head[:10] in page


def test_first_deploy_shows_the_last_commits(
    client, tmp_path, project, production, member, admin_user
):
    repo = Repo(tmp_path)
    head = repo.commit("Second commit", {"README.extra": "x\n"})
    project.repository_url = repo.url
    project.save()
    mirror_update(project)
    promotion = promotion_request(
        release=_release(project, "r2", admin_user, sha=head),
        environment=production,
        actor=admin_user,
    )
    page = _page(client, member("approver"), promotion.get_absolute_url())
    assert "Nothing serves production yet: the last 2 commits up to this release." in page
    assert "Second commit" in page and "Initial commit of the churn model" in page


def test_commits_between_handles_unknown_base_and_missing_mirror(tmp_path, project):
    from apps.pipelines.git import GitError, commits_between

    with pytest.raises(GitError, match="no copy of the repository"):
        commits_between(project, "", "abc1234")
    repo = Repo(tmp_path)
    head = repo.commit("Later", {"x.txt": "1\n"})
    project.repository_url = repo.url
    project.save()
    mirror_update(project)
    assert mirror_path(project).exists()
    unknown_base = "f" * 40
    subjects = [c["subject"] for c in commits_between(project, unknown_base, head, limit=1)]
    assert subjects == ["Later"]  # unknown base: the last N commits
    assert commits_between(project, head, head) == []
    with pytest.raises(GitError, match="not in the repository copy"):
        commits_between(project, "", "e" * 40)


def test_promotion_page_is_not_found_for_a_non_member(client, project, production, admin_user):
    promotion = promotion_request(
        release=_release(project, "r1", admin_user), environment=production, actor=admin_user
    )
    client.force_login(UserFactory(username="stranger"))
    assert client.get(promotion.get_absolute_url()).status_code == 404
    inbox = client.get(reverse("approvals")).content.decode()
    assert promotion.get_absolute_url() not in inbox and ">r1<" not in inbox


def test_promoting_the_release_that_serves_says_there_is_nothing_new(
    client, project, production, admin_user
):
    release = _release(project, "r7", admin_user)
    _serving(production, release)
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    page = _page(client, admin_user, promotion.get_absolute_url())
    assert "This release serves production already: it brings no new commits." in page


def test_the_evidence_says_which_check_ran_in_the_image_and_which_did_not(
    client, project, production, admin_user
):
    release = release_create(
        project=project,
        version="r9",
        commit_sha="abc9",
        actor=admin_user,
        evidence={
            "reproducibility": {
                "reproduce": {"passed": True, "max_abs_diff": 0.0, "rows_outside": 0},
                "reproduce-image": {"passed": True, "image": "sha256:" + "a" * 64},
                "reproduce-other": {"checked": False, "reason": "Not checked in an image"},
            }
        },
    )
    promotion = promotion_request(release=release, environment=production, actor="pipeline")
    client.force_login(admin_user)
    page = client.get(promotion.get_absolute_url()).content.decode()
    assert page.count("in the image") == 1
    assert "not checked" in page and 'title="Not checked in an image"' in page
