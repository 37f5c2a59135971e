"""The build history pages by keyset (apps/core/paging.py): every run once, newest first,
walking older or newer from any page; the filters carried by every link; the same handful of
queries on the first, a middle and the last page whatever the number of runs
(bench/history.py measures it at 100,000)."""

import html
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.paging import cursor_of
from apps.pipelines.models import Job, PipelineRun
from apps.projects.services import membership_set
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

RUNS = 130  # two full pages of 50 and a last one of 30


@pytest.fixture
def runs(project):
    """RUNS runs of ``project`` with a job each; several share a creation time (the cursor
    must break the tie by id)."""
    now = timezone.now()
    made = PipelineRun.objects.bulk_create(
        PipelineRun(
            project=project,
            number=i + 1,
            status="failed" if i % 2 else "succeeded",
            ref="main",
            created=now - timedelta(seconds=(RUNS - i) // 3),
        )
        for i in range(RUNS)
    )
    Job.objects.bulk_create(Job(run=r, name="test", status=r.status) for r in made)
    # bulk_create stamps auto_now_add fields: set the creation times the runs are meant to have.
    for i, run in enumerate(made):
        run.created = now - timedelta(seconds=(RUNS - i) // 3)
    PipelineRun.objects.bulk_update(made, ["created"])
    return made


@pytest.fixture
def viewer(project, admin_user):
    user = UserFactory(username="history-viewer")
    membership_set(project=project, user=user, role="viewer", actor=admin_user)
    return user


def numbers(body: str) -> list[int]:
    return [int(n) for n in re.findall(r"#(\d+)</a></td>", body)]


def links(body: str) -> dict[str, str]:
    pager = re.search(r'<p class="pager">(.*?)</p>', body, re.S).group(1)
    return {
        text: html.unescape(href) for href, text in re.findall(r'href="([^"]*)">([^<]+)<', pager)
    }


def test_walking_older_then_newer_shows_every_run_once_in_order(client, viewer, runs):
    client.force_login(viewer)
    expected = [r.number for r in sorted(runs, key=lambda r: (r.created, r.pk), reverse=True)]
    body = client.get("/runs/").content.decode()
    seen, pages = numbers(body), [numbers(body)]
    assert set(links(body)) == {"older →", "oldest »"}  # the first page: nothing newer
    while "older →" in links(body):
        body = client.get("/runs/" + links(body)["older →"]).content.decode()
        pages.append(numbers(body))
        seen += numbers(body)
    assert seen == expected
    assert [len(p) for p in pages] == [50, 50, 30]
    assert set(links(body)) == {"« newest", "← newer"}  # the last page: nothing older
    # Back from the last page, a page at a time, to the first.
    back = [numbers(body)]
    while "← newer" in links(body):
        body = client.get("/runs/" + links(body)["← newer"]).content.decode()
        back.append(numbers(body))
    assert back == pages[::-1]


def test_oldest_page_and_filters_kept_in_the_links(client, viewer, runs):
    client.force_login(viewer)
    failed = [
        r.number for r in sorted(runs, key=lambda r: (r.created, r.pk)) if r.status == "failed"
    ]
    body = client.get("/runs/", {"status": "failed", "oldest": "1"}).content.decode()
    assert numbers(body) == failed[:50][::-1]  # the 50 oldest failed runs, newest first
    for href in links(body).values():
        assert "status=failed" in href
    body = client.get("/runs/" + links(body)["← newer"]).content.decode()
    assert numbers(body) == failed[50:][::-1]


def test_a_bad_cursor_is_a_400(client, viewer, runs):
    client.force_login(viewer)
    for cursor in ("x", "12_", "_4", "9" * 30 + "_1"):
        response = client.get("/runs/", {"before": cursor})
        assert response.status_code == 400, cursor
        assert b"Not a page cursor" in response.content


@pytest.mark.parametrize("page", ["first", "middle", "last", "filtered"])
def test_each_page_takes_at_most_ten_queries(
    client, viewer, runs, page, django_assert_max_num_queries
):
    client.force_login(viewer)
    client.get("/runs/")  # the session row and caches warm, as for a user who is logged in
    middle = sorted(runs, key=lambda r: (r.created, r.pk))[RUNS // 2]
    url = {
        "first": "/runs/",
        "middle": f"/runs/?before={cursor_of(middle)}",
        "last": "/runs/?oldest=1",
        "filtered": "/runs/?status=failed&branch=main&before=99999999999999999_1",
    }[page]
    with django_assert_max_num_queries(10):
        response = client.get(url)
    assert response.status_code == 200
    assert len(numbers(response.content.decode())) == 50
