"""``setup_demo``: a password for every role, a repository whose clone checks out ``main`` and
whose ``post-receive`` hook delivers a signed push to the control plane — quickly, and with a
clear message when the control plane is not there."""

import socket
import time

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from apps.accounts.models import Membership
from apps.releases.deployers.health import free_port
from apps.webhooks.choices import DeliveryStatus
from apps.webhooks.models import WebhookDelivery

from .conftest import change_and_push, git


@pytest.mark.django_db
def test_every_role_gets_a_printed_password_that_logs_in(setup_demo, client):
    demo = setup_demo()
    assert set(demo.logins) == {"admin", "lead", "dev", "viewer"}
    roles = dict(
        Membership.objects.filter(project=demo.project).values_list("user__username", "role")
    )
    assert {u: roles[u] for u in ("lead", "dev", "viewer")} == {
        "lead": "approver",
        "dev": "developer",
        "viewer": "viewer",
    }
    for user, password in demo.logins.items():
        # Through the login form: django-axes wants the request each sign-in comes with.
        response = client.post(reverse("login"), {"username": user, "password": password})
        assert response.status_code == 302, user
        client.logout()
        assert f"{user} / {password}" in demo.output
    # The smoke test reads the admin's password from this line.
    assert f"Log in as:     admin / {demo.logins['admin']} " in demo.output
    assert f"git clone {demo.repository} churn-model" in demo.output
    # Run again (every `make demo` does): the same passwords, one project, one first run.
    again = setup_demo()
    assert again.logins == demo.logins
    assert get_user_model().objects.filter(username__in=demo.logins).count() == 4
    assert demo.project.runs.count() == 1


@pytest.mark.django_db
def test_the_clone_checks_out_main_and_the_hook_knows_the_secret(setup_demo, settings, tmp_path):
    demo = setup_demo()
    work = demo.clone(tmp_path / "churn-model")
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=work).stdout.strip() == "main"
    assert (work / ".controlplane.yml").is_file() and (work / "model" / "predict.py").is_file()
    assert git("symbolic-ref", "HEAD", cwd=demo.repository).stdout.strip() == "refs/heads/main"
    hook = demo.repository / "hooks" / "post-receive"
    assert hook.stat().st_mode & 0o111
    secret = demo.project.webhook_secret
    assert len(secret) >= 32
    config = git("config", "--get-regexp", "^controlplane[.]", cwd=demo.repository).stdout
    assert f"controlplane.secret {secret}\n" in config
    assert f"controlplane.url {settings.SITE_URL}/hooks/gitea/demo-churn-model/\n" in config
    assert demo.project.repository_url == f"file://{demo.repository}"


@pytest.mark.django_db(transaction=True)
def test_a_push_is_delivered_signed_to_the_control_plane(
    setup_demo, settings, live_server, tmp_path
):
    settings.SITE_URL = live_server.url
    demo = setup_demo()
    sha, printed = change_and_push(demo.clone(tmp_path / "churn-model"))
    assert "remote: control plane: push delivered (202)" in printed, printed
    delivery = WebhookDelivery.objects.get(project=demo.project, provider="gitea")
    assert delivery.status == DeliveryStatus.ACCEPTED, delivery.detail
    assert (delivery.event, delivery.ref, delivery.commit_sha) == ("push", "refs/heads/main", sha)
    assert delivery.payload["head_commit"]["author"]["name"] == "New Comer"


@pytest.mark.django_db
def test_a_push_while_the_control_plane_is_down_is_quick_and_says_so(
    setup_demo, settings, tmp_path
):
    settings.SITE_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    demo = setup_demo()
    work = demo.clone(tmp_path / "churn-model")
    started = time.monotonic()
    sha, printed = change_and_push(work)
    assert time.monotonic() - started < 10
    assert "control plane: not reached at" in printed and "push again" in printed, printed
    # The push itself landed.
    assert git("rev-parse", "main", cwd=demo.repository).stdout.strip() == sha


@pytest.mark.django_db
def test_a_control_plane_that_does_not_answer_holds_the_push_only_for_the_timeout(
    setup_demo, settings, tmp_path
):
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings.SITE_URL = f"http://127.0.0.1:{silent.getsockname()[1]}"
        demo = setup_demo()
        git("config", "controlplane.timeout", "1", cwd=demo.repository)
        started = time.monotonic()
        _sha, printed = change_and_push(demo.clone(tmp_path / "churn-model"))
        elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed
    assert "control plane: not reached at" in printed and "timed out" in printed, printed
