"""apps.pipelines.ansi: job-log ANSI -> safe, balanced HTML. No database."""

import re
import time
from html.parser import HTMLParser

import pytest
from django.utils.safestring import SafeString

from apps.pipelines.ansi import ANSI_CSS, MAX_HELD, AnsiConverter, ansi_to_html

ESC = "\x1b"


class _Checker(HTMLParser):
    """Collects the text and fails on any tag but <span> or on unbalanced spans."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.text: list[str] = []
        self.attrs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        assert tag == "span", tag
        assert self.depth == 0, "spans are never nested"
        self.depth += 1
        self.attrs.append(dict(attrs))

    def handle_endtag(self, tag):
        assert tag == "span", tag
        self.depth -= 1
        assert self.depth >= 0, "closing a span that is not open"

    def handle_data(self, data):
        self.text.append(data)


def check(html: str) -> tuple[str, list[dict[str, str | None]]]:
    """-> (visible text, attributes of each span), asserting the HTML is balanced spans only."""
    p = _Checker()
    p.feed(html)
    p.close()
    assert p.depth == 0, "unclosed span"
    return "".join(p.text), p.attrs


def test_plain_text_is_escaped_and_returned_safe():
    html = ansi_to_html("a < b && c > d \"q\" 'x'\n")
    assert isinstance(html, SafeString)
    assert html == "a &lt; b &amp;&amp; c &gt; d &quot;q&quot; &#x27;x&#x27;\n"
    assert ansi_to_html("") == ""


@pytest.mark.parametrize(
    "log",
    [
        "<script>alert(1)</script>",
        f"{ESC}[31m<img src=x onerror=alert(1)>{ESC}[0m",
        f'{ESC}]8;;javascript:alert(1)"><b>{ESC}\\link{ESC}]8;;{ESC}\\',
        f'{ESC}[38;2;1;2;3"><script>m',  # not a valid SGR: dropped, the rest is text
        f"{ESC}[38;5;<script>m<script>",
        "</span><span class='x'>",
    ],
)
def test_input_never_becomes_markup(log):
    html = ansi_to_html(log)
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    text, attrs = check(html)
    for a in attrs:
        assert set(a) <= {"class", "style"}
        assert re.fullmatch(r"[a-z0-9 -]*", a.get("class") or "")
        assert re.fullmatch(r"((background-)?color:#[0-9a-f]{6};?)*", a.get("style") or "")


def test_basic_colours_bold_and_reset():
    html = ansi_to_html(f"{ESC}[31mred{ESC}[0m plain {ESC}[1;32mbold green{ESC}[m end")
    assert html == (
        '<span class="ansi-fg-1">red</span> plain '
        '<span class="ansi-bold ansi-fg-2">bold green</span> end'
    )


def test_bright_and_background_colours_and_partial_resets():
    html = ansi_to_html(f"{ESC}[91;104ma{ESC}[39mb{ESC}[49mc{ESC}[1;4md{ESC}[22me{ESC}[24mf")
    assert html == (
        '<span class="ansi-fg-9 ansi-bg-12">a</span>'
        '<span class="ansi-bg-12">b</span>c'
        '<span class="ansi-bold ansi-underline">d</span>'
        '<span class="ansi-underline">e</span>f'
    )


def test_italic_dim_strike_and_unknown_codes_are_harmless():
    html = ansi_to_html(f"{ESC}[2;3;9;5;7;53mx{ESC}[0m")
    assert html == '<span class="ansi-dim ansi-italic ansi-strike">x</span>'


def test_unclosed_style_is_closed_at_the_end():
    assert ansi_to_html(f"ok {ESC}[33mwarning") == 'ok <span class="ansi-fg-3">warning</span>'
    assert ansi_to_html(f"{ESC}[33m") == ""  # a style with no text opens no span


def test_text_starting_mid_style_or_with_a_stray_reset():
    assert ansi_to_html(f"tail of red{ESC}[0m\nnext") == "tail of red\nnext"
    assert ansi_to_html(f"{ESC}[0m{ESC}[39m{ESC}[22mx") == "x"


def test_repeated_codes_do_not_split_spans():
    html = ansi_to_html(f"{ESC}[32ma{ESC}[32mb{ESC}[K{ESC}[32mc")
    assert html == '<span class="ansi-fg-2">abc</span>'


def test_256_colours():
    html = ansi_to_html(f"{ESC}[38;5;1ma{ESC}[38;5;208mb{ESC}[48;5;244mc{ESC}[38;5;16md")
    assert html == (
        '<span class="ansi-fg-1">a</span>'
        '<span style="color:#ff8700">b</span>'
        '<span style="color:#ff8700;background-color:#808080">c</span>'
        '<span style="color:#000000;background-color:#808080">d</span>'
    )


def test_truecolor_semicolon_and_colon_forms():
    html = ansi_to_html(f"{ESC}[38;2;255;100;0mx{ESC}[0m{ESC}[48:2::1:2:3my{ESC}[38:5:231mz")
    assert html == (
        '<span style="color:#ff6400">x</span>'
        '<span style="background-color:#010203">y</span>'
        '<span style="color:#ffffff;background-color:#010203">z</span>'
    )


def test_malformed_extended_colours_are_dropped():
    assert ansi_to_html(f"{ESC}[38;5ma{ESC}[38;2;1mb{ESC}[38;9;1mc{ESC}[38mz") == "abcz"
    assert ansi_to_html(f"{ESC}[38;2;999;300;1mx") == '<span style="color:#ffff01">x</span>'


def test_private_csi_ending_in_m_is_not_a_style():
    assert ansi_to_html(f"{ESC}[1m{ESC}[>4;2mx") == '<span class="ansi-bold">x</span>'


def test_cursor_erase_osc_and_other_sequences_are_stripped():
    log = (
        f"{ESC}]0;my title{ESC}\\{ESC}]2;other title\x07"
        f"{ESC}[2J{ESC}[H{ESC}[1A{ESC}[10;20H{ESC}[?25l{ESC}[?25h{ESC}[K"
        f"{ESC}(B{ESC}={ESC}>{ESC}7{ESC}8{ESC}M"
        f"{ESC}]8;;https://example.com{ESC}\\link{ESC}]8;;{ESC}\\"
        f"{ESC}P+q544e{ESC}\\"
        "\x07bell\x08\x00\x7f\x9b ok\tTab\n"
    )
    assert ansi_to_html(log) == "linkbell ok\tTab\n"


def test_escape_cut_by_the_end_of_the_text_is_dropped():
    assert ansi_to_html(f"abc{ESC}[3") == "abc"
    assert ansi_to_html(f"abc{ESC}") == "abc"
    assert ansi_to_html(f"abc{ESC}]0;title") == "abc"


def test_carriage_return_keeps_the_last_segment():
    log = "Downloading  10%\rDownloading  55%\rDownloading 100%\ndone\n"
    assert ansi_to_html(log) == "Downloading 100%\ndone\n"


def test_crlf_is_a_newline_and_trailing_or_blank_segments_are_ignored():
    assert ansi_to_html("a\r\nb\r\n") == "a\nb\n"
    assert ansi_to_html("50%\r") == "50%"
    assert ansi_to_html("50%\r          \r") == "50%"
    assert ansi_to_html(f"old\r{ESC}[2Knew\n") == "new\n"


def test_carriage_return_keeps_styles_of_overwritten_segments():
    log = f"{ESC}[32mprogress 1%\rprogress 2%\rprogress 3%{ESC}[0m\nplain"
    assert ansi_to_html(log) == '<span class="ansi-fg-2">progress 3%</span>\nplain'
    tqdm_like = f"{ESC}[1mepoch{ESC}[0m  1/3\r{ESC}[1mepoch{ESC}[0m  3/3\n"
    assert ansi_to_html(tqdm_like) == '<span class="ansi-bold">epoch</span>  3/3\n'


def test_long_line_without_carriage_return_next_to_one_with_it_stays_linear():
    log = "x" * 300_000 + "\n" + "a\rb\n"
    t0 = time.perf_counter()
    assert ansi_to_html(log).endswith("x\nb\n")
    assert time.perf_counter() - t0 < 0.5


def test_converter_carries_style_across_chunks():
    c = AnsiConverter()
    parts = [
        c.feed(f"start {ESC}[3"),  # the sequence is cut in two
        c.feed("1mred\nstill"),
        c.feed(f" red{ESC}[0m plain\n"),
        c.feed("", final=True),
    ]
    assert parts == [
        "start ",
        '<span class="ansi-fg-1">red\nstill</span>',
        '<span class="ansi-fg-1"> red</span> plain\n',
        "",
    ]
    for p in parts:
        check(p)  # every fragment is balanced on its own


def test_converter_waits_for_the_end_of_a_carriage_return_line():
    c = AnsiConverter()
    assert c.feed("epoch 1\n 10%\r 20%") == "epoch 1\n"
    assert c.feed("\r 30%") == ""
    assert c.feed("\r100%\nnext\n") == "100%\nnext\n"
    assert c.feed("tail 1%\r", final=True) == "tail 1%"
    assert c.feed("\r\n") == "\n"


def test_converter_does_not_hold_an_endless_carriage_return_line():
    c = AnsiConverter()
    assert c.feed("x\r" * (MAX_HELD // 2 + 10)) == "x"


def test_converter_equals_one_shot_when_chunks_are_whole_lines():
    log = "".join(f"{ESC}[3{i % 8}mline {i}\rline {i} done\n" for i in range(200)) + "end"
    lines = log.splitlines(keepends=True)
    c = AnsiConverter()
    chunked = "".join(c.feed(ln) for ln in lines) + c.feed("", final=True)
    assert check(chunked)[0] == check(ansi_to_html(log))[0]


def test_css_covers_every_class_emitted():
    html = ansi_to_html(
        "".join(f"{ESC}[{c}mx{ESC}[0m" for c in [1, 2, 3, 4, 9, *range(30, 38), *range(40, 48)])
        + "".join(f"{ESC}[{c}mx{ESC}[0m" for c in [*range(90, 98), *range(100, 108)])
    )
    classes = {c for m in re.findall(r'class="([^"]*)"', html) for c in m.split()}
    assert len(classes) == 37
    for cls in classes:
        assert f".{cls} {{" in ANSI_CSS


def test_one_megabyte_of_coloured_log_is_fast():
    line = (
        f"{ESC}[32mPASSED{ESC}[0m tests/test_model.py::test_case[<param>] "
        f"{ESC}[1;31mE{ESC}[0m {ESC}[38;5;244m(0.01s){ESC}[0m & more text\n"
    )
    log = line * (1_000_000 // len(line) + 1)
    assert len(log) >= 1_000_000
    t0 = time.perf_counter()
    html = ansi_to_html(log)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, f"{elapsed:.3f}s"
    assert html.count("<span") == html.count("</span>") == 3 * log.count("\n")
    assert "&lt;param&gt;" in html and ESC not in html
