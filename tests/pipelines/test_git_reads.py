"""Reads of the mirror on the way to a job's first command: a push of a branch's head is on
that branch without a git process, and a commit's tree ids are asked of git once per process
(a commit's content never changes)."""

import shutil

import pytest

from apps.pipelines import git

from .gitrepo import Repo

pytestmark = pytest.mark.django_db


@pytest.fixture
def mirrored(project, tmp_path):
    repo = Repo(tmp_path)
    first = repo.head
    repo.commit("second", {"extra.txt": "x\n"})
    project.repository_url = repo.url
    project.save()
    git.mirror_update(project)
    return project, repo, first


def test_the_branch_head_is_on_the_branch_without_asking_git(mirrored, monkeypatch):
    project, repo, first = mirrored
    assert git.on_ref(project, first, "main")  # an ancestor: git answers
    assert not git.on_ref(project, "0" * 40, "main")

    def no_git(*args, **kwargs):
        raise AssertionError(f"git was run: {args}")

    monkeypatch.setattr(git, "git", no_git)
    assert git.on_ref(project, repo.head, "main")


def test_tree_ids_are_asked_of_git_once_per_commit(mirrored):
    project, repo, _ = mirrored
    paths = ["", "model", "missing"]
    answer = git.tree_ids(project, repo.head, paths)
    assert answer[""] and answer["model"] and answer["missing"] is None
    shutil.rmtree(git.mirror_path(project))  # git could not answer again
    again = git.tree_ids(project, repo.head, paths)
    assert again == answer
    again[""] = "changed by the caller"
    assert git.tree_ids(project, repo.head, paths) == answer  # the kept answer is a copy
