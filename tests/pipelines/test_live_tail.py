"""The job page's live tail renders a log read piece by piece exactly like the whole log:
colours, escape sequences, UTF-8 characters and ``\\r`` lines that span two polls included.

The log is split at every byte offset and read through the tail view itself (the URL each
answer puts in its next poll), so the state carried between polls is the real one."""

import re

import pytest
from django.test import Client

from apps.pipelines.ansi import PLAIN, ansi_to_html, style_from_sgr, style_to_sgr
from apps.pipelines.choices import JobStatus
from apps.pipelines.logs import log_html, log_path
from apps.pipelines.models import Job
from tests.factories import JobFactory

ESC = "\x1b"
LOG = (
    f"plain {ESC}[1;31mbold red\nstill red ü {ESC}[38;5;208morange{ESC}[0m "
    f"done ✓ {ESC}[48;2;1;2;3mtrue bg 😀{ESC}[49m\n"
    f"{ESC}]0;title{ESC}\\{ESC}[2K 10%\r 50%\r{ESC}[32m100%{ESC}[0m\n"
    f"last {ESC}[4munderlined"
).encode()
WHOLE = ansi_to_html(LOG.decode())
NEXT = re.compile(r'<span hx-get="([^"]+)"')


def merged(html: str) -> str:
    """``<span a>x</span><span a>y</span>`` → ``<span a>xy</span>``: a style closed at the end
    of one poll's fragment and reopened by the next looks the same on the page."""
    out, last = [], None
    for part in re.split(r"(<span[^>]*>|</span>)", html):
        if part.startswith("<span"):
            if out and out[-1] == "</span>" and part == last:
                out.pop()
                continue
            last = part
        if part:
            out.append(part)
    return "".join(out)


def test_style_token_round_trips():
    for sgr in ["", "1", "1;2;3;4;9", "31;42", "91;107", "38;2;1;2;3;48;2;250;0;9", "38;5;208"]:
        style = style_from_sgr(sgr)
        assert style_from_sgr(style_to_sgr(style)) == style
    for junk in ["x", "1;<script>", "²", "9" * 200]:
        assert style_from_sgr(junk) == PLAIN


def _splits():
    """Every byte offset inside an escape sequence or a multi-byte character, and one on each
    side of it, plus a few plain ones."""
    special = set()
    text = LOG.decode()
    pos = 0
    for ch in text:
        size = len(ch.encode())
        if size > 1:
            special.update(range(pos, pos + size + 1))
        pos += size
    for m in re.finditer(rb"\x1b(\[[0-9;:]*[@-~]|\][^\x1b]*\x1b\\)", LOG):
        special.update(range(m.start(), m.end() + 1))
    for m in re.finditer(rb"\r", LOG):
        special.update(range(m.start(), m.end() + 1))
    return sorted(special | {0, 3, len(LOG)})


def test_every_split_point_is_covered():
    splits = _splits()
    assert len(splits) > 80
    assert all(i in splits for i in range(LOG.index(b"\xf0"), LOG.index(b"\xf0") + 5))


@pytest.mark.parametrize("cut", _splits())
def test_log_html_pieces_render_like_the_whole_log(tmp_path, cut):
    path = tmp_path / "job.log"
    path.write_bytes(LOG[:cut])
    first = log_html(path, 0, final=False)
    assert first.offset <= cut
    with open(path, "ab") as fh:
        fh.write(LOG[cut:])
    second = log_html(path, first.offset, sgr=first.sgr, final=True)
    assert second.eof and second.offset == len(LOG)
    assert merged(first.html + second.html) == WHOLE


@pytest.mark.parametrize("extra", range(8))
def test_reads_smaller_than_the_log_render_like_the_whole_log(tmp_path, extra):
    """Reads just longer than the longest line: they end anywhere, inside sequences too."""
    path = tmp_path / "job.log"
    path.write_bytes(LOG)
    limit = max(len(line) for line in LOG.splitlines(keepends=True)) + extra
    parts, offset, sgr = [], 0, ""
    for _ in range(len(LOG)):
        piece = log_html(path, offset, sgr=sgr, limit=limit, final=True)
        parts.append(piece.html)
        offset, sgr = piece.offset, piece.sgr
        if piece.eof:
            break
    assert offset == len(LOG)
    assert len(parts) > 2
    assert merged("".join(parts)) == WHOLE


def test_a_line_longer_than_a_read_is_shown_as_it_is(tmp_path):
    path = tmp_path / "job.log"
    path.write_bytes(("ü" * 40).encode())  # 80 bytes, no newline, the job still runs
    piece = log_html(path, 0, limit=33)
    assert piece.html == "ü" * 16 and piece.offset == 32  # not cut inside a character
    assert log_html(path, 0, limit=200).html == ""  # it may still end: it waits


@pytest.fixture
def job(db, admin_user, project, settings, tmp_path):
    settings.JOB_LOG_DIR = str(tmp_path / "logs")
    job = JobFactory(run__project=project, status=JobStatus.RUNNING)
    log_path(job.pk, job.run_id).parent.mkdir(parents=True)
    return job


def _poll(client: Client, url: str) -> tuple[str, str | None]:
    """-> (the log fragment of one tail answer, the next poll's URL or None)."""
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    body = body.split('<div class="card" id="job-summary"', 1)[0]  # the out-of-band card
    m = NEXT.search(body)
    if m is None:
        return body, None
    return body[: m.start()], m.group(1).replace("&amp;", "&")


@pytest.mark.parametrize("cut", _splits())
def test_the_live_tail_view_renders_like_the_whole_log(client, admin_user, job, cut):
    client.force_login(admin_user)
    path = log_path(job.pk, job.run_id)
    path.write_bytes(LOG[:cut])
    page = client.get(job.get_absolute_url()).content.decode()
    shown = page.split('<pre class="log" id="log">', 1)[1]
    m = NEXT.search(shown)
    parts, url = [shown[: m.start()]], m.group(1).replace("&amp;", "&")
    with open(path, "ab") as fh:
        fh.write(LOG[cut:])
    fragment, url = _poll(client, url)  # the job still runs: an unfinished tail waits
    parts.append(fragment)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    fragment, url = _poll(client, url)  # the job is over: the rest is shown, polling stops
    parts.append(fragment)
    assert url is None
    assert merged("".join(parts)) == WHOLE


def test_a_long_log_page_starts_at_a_whole_line(client, admin_user, job, settings):
    client.force_login(admin_user)
    path = log_path(job.pk, job.run_id)
    path.write_bytes(("é" * 50 + "\n").encode() * 2000 + LOG)
    page = client.get(job.get_absolute_url()).content.decode()
    shown = page.split('<pre class="log" id="log">', 1)[1]
    assert "Showing the end of the log" in page
    assert shown.startswith("é" * 50 + "\n")
    assert "\ufffd" not in shown
