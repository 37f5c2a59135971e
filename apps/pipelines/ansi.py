"""Job-log text with ANSI escape sequences -> safe HTML for the UI.

Everything is HTML-escaped. SGR styles (bold, dim, italic, underline, strike, 16 colours)
become ``<span class="ansi-...">``; 256-colour and truecolor become an inline ``color`` /
``background-color`` computed from integers (no input reaches an attribute). At most one
span is open at a time and it is closed at the end, so every result is balanced. All other
escape sequences and control characters are dropped; a line rewritten with ``\\r`` (a
progress bar) keeps only its last non-blank segment.
"""

from __future__ import annotations

import re
from functools import lru_cache
from html import escape

from django.utils.safestring import SafeString, mark_safe

_ESC = re.compile(
    r"\x1b\[(?P<sgr>[0-9;:]*)m"  # SGR: the only sequence kept (as a style)
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # other CSI: cursor moves, erase line, private modes...
    r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"  # OSC: window title, hyperlink
    r"|\x1b[P^_X][^\x1b\n]*(?:\x1b\\)?"  # DCS / PM / APC / SOS strings
    r"|\x1b\[[0-?]*[ -/]*\Z"  # a CSI cut off by the end of the text
    r"|\x1b[ -/]*[0-~]?"  # other escapes (charset, keypad...), lone ESC
    r"|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"  # control characters other than \t \n \r
)
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_INCOMPLETE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b\n]*)?\Z")
MAX_HELD = 64 * 1024  # AnsiConverter holds back at most this much of an unfinished \r line

# VS Code's dark terminal palette (black foreground lifted a little to stay readable).
PALETTE = (
    "#000000 #cd3131 #0dbc79 #e5e510 #2472c8 #bc3fbc #11a8cd #e5e5e5 "
    "#666666 #f14c4c #23d18b #f5f543 #3b8eea #d670d6 #29b8db #ffffff"
).split()
ANSI_CSS = "\n".join(
    [
        ".ansi-bold { font-weight: bold; }",
        ".ansi-dim { opacity: 0.7; }",
        ".ansi-italic { font-style: italic; }",
        ".ansi-underline { text-decoration: underline; }",
        ".ansi-strike { text-decoration: line-through; }",
        ".ansi-fg-0 { color: #4d4d4d; }",
    ]
    + [f".ansi-fg-{i} {{ color: {c}; }}" for i, c in enumerate(PALETTE) if i]
    + [f".ansi-bg-{i} {{ background-color: {c}; }}" for i, c in enumerate(PALETTE)]
)

_FLAGS = {1: "bold", 2: "dim", 3: "italic", 4: "underline", 9: "strike"}
_UNSET = {22: ("bold", "dim"), 23: ("italic",), 24: ("underline",), 29: ("strike",)}
_CUBE = (0, 95, 135, 175, 215, 255)
Style = tuple[frozenset[str], int | str | None, int | str | None]  # flags, fg, bg
PLAIN: Style = (frozenset(), None, None)


def _colour(mode: str, args: list[str]) -> int | str | None:
    """``5;n`` or ``2;r;g;b`` -> a palette index (0-15) or ``#rrggbb``; None if malformed."""
    nums = [min(int(a), 255) if a.isdigit() else 0 for a in args]
    if mode == "5" and nums:
        n = nums[0]
        if n < 16:
            return n
        if n >= 232:
            r = g = b = 8 + 10 * (n - 232)
        else:
            r, g, b = (_CUBE[(n - 16) // d % 6] for d in (36, 6, 1))
    elif mode == "2" and len(nums) >= 3:
        r, g, b = nums[-3:]
    else:
        return None
    return f"#{r:02x}{g:02x}{b:02x}"


def _apply(style: Style, params: str) -> Style:
    flags, fg, bg = set(style[0]), style[1], style[2]
    codes = params.split(";")
    i = 0
    while i < len(codes):
        head, *sub = codes[i].split(":")  # 38:2::r:g:b is the colon form of 38;2;r;g;b
        i += 1
        n = int(head) if head.isdigit() else 0
        if n in (38, 48, 58):
            if not sub:
                mode = codes[i] if i < len(codes) else ""
                take = {"5": 1, "2": 3}.get(mode, len(codes))  # unknown: ignore the rest
                sub, i = codes[i : i + 1 + take], i + 1 + take
            colour = _colour(sub[0], sub[1:]) if sub else None
            fg, bg = (colour, bg) if n == 38 else (fg, colour) if n == 48 else (fg, bg)
        elif n == 0:
            flags, fg, bg = set(), None, None
        elif n in _FLAGS:
            flags.add(_FLAGS[n])
        elif n in _UNSET:
            flags.difference_update(_UNSET[n])
        elif 30 <= n <= 37 or 90 <= n <= 97:
            fg = n - 30 if n < 90 else n - 82
        elif 40 <= n <= 47 or 100 <= n <= 107:
            bg = n - 40 if n < 100 else n - 92
        elif n == 39:
            fg = None
        elif n == 49:
            bg = None
    return (frozenset(flags), fg, bg)


@lru_cache(maxsize=512)
def _open_tag(style: Style) -> str:
    classes = [f"ansi-{f}" for f in sorted(style[0])]
    css = []
    for kind, prop, value in (("fg", "color", style[1]), ("bg", "background-color", style[2])):
        if isinstance(value, int):
            classes.append(f"ansi-{kind}-{value}")
        elif value is not None:
            css.append(f"{prop}:{value}")
    attrs = f' class="{" ".join(classes)}"' if classes else ""
    if css:
        attrs += f' style="{";".join(css)}"'
    return f"<span{attrs}>"


def _last_segment(line: str) -> str:
    """``a\\rb\\rc`` -> ``c`` (the last non-blank part), keeping the overwritten parts' SGR."""
    parts = line.split("\r")
    i = len(parts) - 1
    while i > 0 and not _ESC.sub("", parts[i]).strip():
        i -= 1
    return "".join(_SGR.findall("".join(parts[:i]))) + parts[i]


class AnsiConverter:
    """Convert a log chunk by chunk: each fragment is balanced HTML, a style open at the
    end of one chunk is reopened at the start of the next, and an escape sequence cut in
    two by a chunk boundary is held back until its end arrives."""

    def __init__(self, style: Style = PLAIN) -> None:
        self.style: Style = style
        self._held = ""

    @property
    def held(self) -> str:
        """The tail of the text fed so far that is not converted yet (the next feed starts
        with it): an unfinished escape sequence or ``\\r`` line."""
        return self._held

    def feed(self, text: str, *, final: bool = False) -> SafeString:
        """Convert the next chunk; ``final=True`` for the last one (flushes what was held)."""
        text, self._held = self._held + text, ""
        if not final:
            nl = text.rfind("\n") + 1
            if "\r" in text[nl:] and len(text) - nl <= MAX_HELD:
                cut = nl  # an unfinished \r line: its last segment is not known yet
            elif m := _INCOMPLETE.search(text, max(len(text) - 256, 0)):
                cut = m.start()
            else:
                cut = len(text)
            text, self._held = text[:cut], text[cut:]
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            text = "\n".join(_last_segment(ln) if "\r" in ln else ln for ln in text.split("\n"))
        out: list[str] = []
        shown = PLAIN  # the style of the span open at the end of ``out``
        pos = 0
        for m in _ESC.finditer(text):
            if m.start() > pos:
                shown = self._emit(out, shown, text[pos : m.start()])
            if (sgr := m.group("sgr")) is not None:
                self.style = _apply(self.style, sgr)
            pos = m.end()
        if self._emit(out, shown, text[pos:]) != PLAIN:
            out.append("</span>")
        return mark_safe("".join(out))  # noqa: S308 (escaped text and tags built here)

    def _emit(self, out: list[str], shown: Style, chunk: str) -> Style:
        if not chunk:
            return shown
        if self.style != shown:
            if shown != PLAIN:
                out.append("</span>")
            if self.style != PLAIN:
                out.append(_open_tag(self.style))
            shown = self.style
        out.append(escape(chunk))
        return shown


_SGR_PARAMS = re.compile(r"[0-9;:]{0,128}")
_FLAG_CODES = {flag: code for code, flag in _FLAGS.items()}


def style_to_sgr(style: Style) -> str:
    """The SGR parameters that turn a plain terminal into ``style`` ("" for plain): a small,
    printable token for the style open at some point of a log (the live tail carries it from
    one poll to the next)."""
    codes = [str(_FLAG_CODES[f]) for f in sorted(style[0])]
    for base, value in ((30, style[1]), (40, style[2])):
        if isinstance(value, int):
            codes.append(str(base + value if value < 8 else base + 60 + value - 8))
        elif value is not None:
            r, g, b = (int(value[i : i + 2], 16) for i in (1, 3, 5))
            codes.append(f"{base + 8};2;{r};{g};{b}")
    return ";".join(codes)


def style_from_sgr(params: str) -> Style:
    """The inverse of :func:`style_to_sgr`; anything that is not SGR parameters is plain."""
    if not _SGR_PARAMS.fullmatch(params):
        return PLAIN
    return _apply(PLAIN, params)


def ansi_to_html(text: str) -> SafeString:
    """The whole of ``text`` as balanced, escaped HTML (for a ``<pre>``)."""
    return AnsiConverter().feed(text, final=True)
