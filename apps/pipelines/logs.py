"""Job logs: one append-only file per job attempt set, written in chunks, secrets masked.

Memory stays flat whatever the output size: the writer holds at most one chunk plus the
longest secret it masks.

Masking guards against accidents (a ``set -x``, a debug print, a library echoing its config),
not against a job that wants a secret out: it can split, reverse or encrypt it. Protected
variables are what keep secrets from code that should not have them (docs/secrets.md).
"""

import base64
import codecs
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from django.conf import settings
from django.utils.safestring import SafeString, mark_safe

from apps.core.storage import disk_full_message, is_disk_full

from .ansi import AnsiConverter, Style, style_from_sgr, style_to_sgr

logger = logging.getLogger(__name__)

MASK = "********"


def log_path(job_id: int, run_id: int) -> Path:
    return Path(settings.JOB_LOG_DIR) / str(run_id) / f"{job_id}.log"


def masked_forms(secret: str) -> set[bytes]:
    """The byte strings masked for one secret: the value as is, and the encodings a tool is
    likely to print it in by accident: base64 (standard and URL-safe, with and without the
    newline ``echo … | base64`` adds, padding left out so a padded form is covered too),
    URL-encoding (``%xx`` and ``+`` for spaces) and hex (both cases)."""
    raw = secret.encode()
    forms = {raw}
    for value in (raw, raw + b"\n"):
        for encoded in (base64.b64encode(value), base64.urlsafe_b64encode(value)):
            forms.add(encoded.rstrip(b"="))
    forms.add(quote(secret, safe="").encode())
    forms.add(quote_plus(secret, safe="").encode())
    forms.add(raw.hex().encode())
    forms.add(raw.hex().upper().encode())
    return forms


class LogWriter:
    """Append bytes to a job's log, replacing secret values (and their encoded forms, see
    :func:`masked_forms`) with ``********``.

    A secret may be split across two chunks, so the writer holds back the last
    ``len(longest secret) - 1`` bytes until the next chunk (or close) arrives.
    """

    def __init__(self, path: Path, secrets: Iterable[str] = ()) -> None:
        self.path = path
        self._secrets = sorted(
            {form for s in secrets if s and len(s) >= 3 for form in masked_forms(s)},
            key=len,
            reverse=True,
        )
        self._keep = max((len(s) for s in self._secrets), default=1) - 1
        self._pending = b""
        #: "Disk full: …" once the log's volume refused a write: what was written stays as it
        #: is, later output is dropped (counted in ``dropped``) and ``on_full`` is called once
        #: (the executor stops the job and fails it with this message).
        self.full = ""
        self.dropped = 0
        self.on_full: Callable[[], None] | None = None
        self._fh = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: every write reaches the file at once (the live tail reads it), and a
            # full disk leaves no buffered rest for close() to fail on again.
            self._fh = open(path, "ab", buffering=0)  # noqa: SIM115 (closed in close())
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._disk_full(exc)
        self.bytes_written = log_size(path)

    def _mask(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret, MASK.encode())
        return data

    def write(self, data: bytes) -> None:
        if not self._secrets:
            self._emit(data)
            return
        data = self._mask(self._pending + data)
        if self._keep and len(data) > self._keep:
            self._pending, data = data[-self._keep :], data[: -self._keep]
        elif self._keep:
            self._pending, data = data, b""
        self._emit(data)

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        if self._fh is None or self.full:
            self.dropped += len(data)
            return
        view = memoryview(data)
        try:
            while view:
                written = self._fh.write(view)  # a full disk may take part of it first
                self.bytes_written += written
                view = view[written:]
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self.dropped += len(view)
            self._disk_full(exc)

    def _disk_full(self, exc: OSError) -> None:
        self.full = disk_full_message(self.path, exc, what="the job log")
        logger.error("%s", self.full)
        if self.on_full is not None:
            self.on_full()

    def line(self, text: str) -> None:
        """A line from the control plane itself (not the job), shown with a marker."""
        self.write(f"\x1b[36m[controlplane] {text}\x1b[0m\n".encode())

    def close(self) -> None:
        if self._pending:
            self._emit(self._mask(self._pending))
            self._pending = b""
        if self._fh is not None:
            self._fh.close()


class OffsetError(ValueError):
    """A log offset that is not a whole number (400) or past the log's end (416)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def log_offset(raw: str | None, size: int) -> int:
    """``raw`` (a query parameter) as an offset into a log of ``size`` bytes. Logs only grow
    (appended to, attempt after attempt), so an offset past the end was never given out."""
    if raw is None or raw == "":
        return 0
    if not raw.isdigit() or len(raw) > 19:
        raise OffsetError("offset must be a whole number of bytes (0 or more).", 400)
    offset = int(raw)
    if offset > size:
        raise OffsetError(f"offset {offset} is past the end of the log ({size} bytes).", 416)
    return offset


def read_range(path: Path, offset: int = 0, limit: int = 256 * 1024) -> tuple[bytes, int]:
    """Read at most ``limit`` bytes from ``offset``; return them and the next offset."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(limit)
    except FileNotFoundError:
        return b"", offset
    return data, offset + len(data)


def log_size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # surrogateescape's stand-ins for bad bytes


@dataclass(frozen=True)
class LogHtml:
    html: SafeString  # escaped, balanced HTML
    offset: int  # where the next read starts: a byte that begins a character and a sequence
    sgr: str  # the style open at ``offset``, as SGR parameters ("" for plain)
    eof: bool  # the read reached the end of the file


def log_html(
    path: Path, offset: int = 0, *, sgr: str = "", limit: int = 256 * 1024, final: bool = False
) -> LogHtml:
    """The log from ``offset`` as HTML, for a tail that reads it piece by piece.

    Nothing is kept between calls: the next read starts at the returned ``offset`` with the
    returned ``sgr``, so the pieces together render exactly like the whole log. The offset
    stops after a newline: the unfinished last line waits for its end, because a ``\\r``
    may still rewrite it (a line longer than a read is shown as it is, cut at a character
    and an escape sequence). ``final`` (the job is over): at the end of the file,
    whatever is left is shown.
    """
    data, end = read_range(path, offset, limit)
    eof = len(data) < limit
    flush = final and eof
    style = style_from_sgr(sgr)
    if not flush:
        whole = data.rfind(b"\n") + 1
        if whole or eof:
            data, end = data[:whole], offset + whole
    html, style, held = _convert(data, style, flush=flush)
    if held and held == len(data) == limit:
        # TRICKY: one line longer than a whole read would stop the tail for ever; it is
        # shown as it is instead.
        html, style, held = _convert(data, style_from_sgr(sgr), flush=True)
    return LogHtml(html=html, offset=end - held, sgr=style_to_sgr(style), eof=eof)


def _convert(data: bytes, style: Style, *, flush: bool) -> tuple[SafeString, Style, int]:
    """-> (HTML, the style at the end of what was converted, bytes left for the next read)."""
    # surrogateescape: a bad byte is one character that encodes back to itself, so the
    # length of what is held back is exact; it is shown as U+FFFD.
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    text = decoder.decode(data, final=flush)
    converter = AnsiConverter(style)
    html = converter.feed(text, final=flush)
    held = len(converter.held.encode("utf-8", "surrogateescape")) + len(decoder.getstate()[0])
    html = mark_safe(_UNDECODABLE.sub("\ufffd", html))  # noqa: S308 (a character for another)
    return html, converter.style, held
