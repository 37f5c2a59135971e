"""Linking a Slack identity takes proof from Slack: a one-time code the bot sends to that Slack
user (slack-sdk → the fake Slack of conftest.py), entered back by the signed-in account."""

import re

import pytest
from django.core.cache import cache

from apps.core.models import AuditEvent
from apps.notifications import linking
from apps.notifications.models import SlackIdentity

from .conftest import BOT_TOKEN, api_calls

pytestmark = pytest.mark.django_db

PAGE = "/integrations/slack/account/"
ME = "/api/v1/me/slack-identity/"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def _code(slack_server, slack_user_id):
    [dm] = [
        c
        for c in api_calls(slack_server, "chat.postMessage")
        if c["json"]["channel"] == slack_user_id
    ][-1:]
    return re.search(r"\*(\d{6})\*", dm["json"]["text"]).group(1)


def test_the_code_goes_to_that_slack_user_by_the_bot(client, member, slack_server):
    alice = member("approver", "alice")
    client.force_login(alice)
    client.post(PAGE, {"slack_user_id": "U0ALICE"})
    [call] = api_calls(slack_server, "chat.postMessage")
    assert call["json"]["channel"] == "U0ALICE"
    assert call["headers"]["authorization"] == f"Bearer {BOT_TOKEN}"
    assert "alice" in call["json"]["text"]
    assert not SlackIdentity.objects.exists()


def test_a_wrong_code_links_nothing_and_five_wrong_codes_end_it(client, member, slack_server):
    mallory = member("developer", "mallory")
    client.force_login(mallory)
    client.post(PAGE, {"slack_user_id": "U0BOSS"})  # someone else's member ID
    real = _code(slack_server, "U0BOSS")
    audit = AuditEvent.objects.count()
    for n in range(linking.MAX_TRIES):
        wrong = f"{(int(real) + 1 + n) % 10**6:06d}"
        response = client.post(PAGE, {"action": "confirm", "code": wrong}, follow=True)
        assert response.status_code == 200
        text = response.content.decode()
        assert "not the code" in text or "too many times" in text
    assert not SlackIdentity.objects.exists() and AuditEvent.objects.count() == audit
    # Even the right code is refused now: the pending link was dropped.
    client.post(PAGE, {"action": "confirm", "code": real})
    assert not SlackIdentity.objects.exists()


def test_the_code_is_only_good_for_the_account_that_asked(api, member, slack_server):
    alice, mallory = member("approver", "alice"), member("developer", "mallory")
    assert api(alice).put(ME, {"slack_user_id": "U0ALICE"}, format="json").status_code == 202
    code = _code(slack_server, "U0ALICE")
    response = api(mallory).put(ME, {"code": code}, format="json")
    assert response.status_code == 400
    assert not SlackIdentity.objects.exists()
    assert api(alice).put(ME, {"code": code}, format="json").status_code == 200
    assert SlackIdentity.objects.get().user == alice
    # Used once.
    assert api(alice).put(ME, {"code": code}, format="json").status_code == 400


def test_slack_refusing_the_member_id_is_said_on_the_page(client, member, slack_server):
    client.force_login(member("approver", "alice"))
    slack_server.codes.append({"ok": False, "error": "channel_not_found"})
    page = client.post(PAGE, {"slack_user_id": "U0NOBODY"}, follow=True).content.decode()
    assert "channel_not_found" in page and "Code from Slack" not in page
    assert linking.slack_link_pending(user=member("viewer", "v")) is None


def test_no_bot_token_no_link(client, member, settings):
    settings.SLACK_BOT_TOKEN = ""
    client.force_login(member("approver", "alice"))
    page = client.post(PAGE, {"slack_user_id": "U0ALICE"}, follow=True).content.decode()
    assert "Slack is not set up" in page
    assert not SlackIdentity.objects.exists()
