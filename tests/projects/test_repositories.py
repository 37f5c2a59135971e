"""A project's repository URL: https/ssh/git only, local paths only where the install allows
them, never into the control plane's own data; and a worker checks again before it clones."""

from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from apps.pipelines import git
from apps.projects.models import Project

pytestmark = pytest.mark.django_db

no_local = override_settings(CONTROLPLANE_ALLOW_LOCAL_REPOSITORIES=False)


def patch(api, user, project, url):
    return api(user).patch(
        reverse("project-detail", args=[project.slug]), {"repository_url": url}, format="json"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/churn-model.git",
        "ssh://git@git.example.com:2222/acme/churn.git",
        "git@github.com:acme/churn-model.git",
        "git://git.example.com/churn.git",
        "",
    ],
)
@no_local
def test_remote_urls_are_accepted(project, admin_user, api, url):
    response = patch(api, admin_user, project, url)
    assert response.status_code == 200, response.content
    project.refresh_from_db()
    assert project.repository_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///srv/git/churn.git", "Local repositories"),
        ("/srv/git/churn.git", "Local repositories"),
        ("http://git.example.com/churn.git", "scheme 'http' is not allowed"),
        ("ftp://git.example.com/churn.git", "scheme 'ftp' is not allowed"),
        ("ext::sh -c touch% /tmp/pwned", "remote helpers"),
        ("fd::17", "remote helpers"),
        ("-uhelp", "cannot start with '-'"),
        ("churn.git", "Give the repository as"),
        ("https:///no-host", "needs a host"),
    ],
)
@no_local
def test_other_urls_are_refused_with_a_reason_and_nothing_changes(
    project, admin_user, api, url, message
):
    before = project.repository_url
    response = patch(api, admin_user, project, url)
    assert response.status_code == 400
    assert message in str(response.json()["repository_url"])
    project.refresh_from_db()
    assert project.repository_url == before


@no_local
def test_creating_a_project_with_a_local_path_is_refused(admin_user, api):
    count = Project.objects.count()
    response = api(admin_user).post(
        reverse("project-list"),
        {"name": "Sneaky", "repository_url": "file:///etc"},
        format="json",
    )
    assert response.status_code == 400
    assert "CONTROLPLANE_ALLOW_LOCAL_REPOSITORIES" in str(response.json())
    assert Project.objects.count() == count


def test_local_paths_are_allowed_where_the_install_says_so(project, admin_user, api, tmp_path):
    bare = tmp_path / "origin.git"
    bare.mkdir()
    for url in (f"file://{bare}", str(bare)):
        response = patch(api, admin_user, project, url)
        assert response.status_code == 200, response.content


def test_another_projects_mirror_and_var_are_refused_even_then(project, admin_user, api, tmp_path):
    other = Project.objects.create(name="Other", slug="other")
    mirror = git.mirror_path(other)
    mirror.mkdir(parents=True, exist_ok=True)
    link = tmp_path / "innocent.git"
    link.symlink_to(mirror)  # a symlink does not hide where it leads
    var = Path(settings.VAR_DIR) / "controlplane.sqlite3"
    for url in (f"file://{mirror}", str(mirror), f"file://{link}", str(var), f"{mirror}/../x"):
        response = patch(api, admin_user, project, url)
        assert response.status_code == 400, url
        assert "control plane's own data" in str(response.json()["repository_url"])
    project.refresh_from_db()
    assert project.repository_url == ""


def test_the_demos_repository_folder_is_allowed(project, admin_user, api):
    url = f"file://{Path(settings.VAR_DIR) / 'git' / 'churn-model.git'}"
    assert patch(api, admin_user, project, url).status_code == 200


def test_a_developer_cannot_change_the_url(project, member, api):
    response = patch(api, member("developer"), project, "https://github.com/x/y.git")
    assert response.status_code == 403
    project.refresh_from_db()
    assert project.repository_url == ""


def test_the_worker_refuses_to_clone_a_url_set_behind_the_rules_back(project, tmp_path):
    """A URL written before the rule existed, or allowed then refused by the install: the
    worker checks again and clones nothing."""
    other = Project.objects.create(name="Other", slug="other")
    mirror = git.mirror_path(other)
    Project.objects.filter(pk=project.pk).update(repository_url=f"file://{mirror}")
    project.refresh_from_db()
    with pytest.raises(git.GitError, match="Repository URL refused"):
        git.mirror_update(project)
    assert not git.mirror_path(project).exists()
    Project.objects.filter(pk=project.pk).update(repository_url=f"file://{tmp_path}")
    project.refresh_from_db()
    with no_local, pytest.raises(git.GitError, match="Local repositories"):
        git.mirror_update(project)
    assert not git.mirror_path(project).exists()
