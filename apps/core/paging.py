"""Keyset pagination for lists ordered newest first by ``(created, id)``.

Offset pagination reads and throws away every row before the page (page 2,000 of the build
history read 100,000 rows) and counts the whole list for "page N of M". A keyset page starts
at the last row the reader saw: ``WHERE (created, id) < (…)`` on an index of ``(created, id)``
reads only the rows it shows, on the first page as on the last. What it gives up: page
numbers and the total.

A cursor is ``<microseconds since the epoch>_<id>`` of one row, exact (no float), short and
URL-safe.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import F, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PARAMS = ("before", "after", "oldest")


class CursorError(ValueError):
    """A cursor that is not one this module made."""


def cursor_of(row) -> str:
    return f"{(row.created - EPOCH) // timedelta(microseconds=1)}_{row.pk}"


def parse_cursor(raw: str) -> tuple[datetime, int]:
    usec, sep, pk = raw.partition("_")
    try:
        if not sep:
            raise ValueError
        return EPOCH + timedelta(microseconds=int(usec)), int(pk)
    except (ValueError, OverflowError) as exc:
        raise CursorError(f"Not a page cursor: {raw[:40]!r}") from exc


@dataclass
class KeysetPage:
    rows: list
    newer: str | None  # the cursor of the page before (newer rows), None on the first
    older: str | None  # the cursor of the page after (older rows), None on the last
    is_first: bool
    is_last: bool

    @property
    def object_list(self) -> list:
        return self.rows


def keyset_page(qs: QuerySet, params, size: int = 50) -> KeysetPage:
    """The page of ``qs`` (newest first) that ``params`` (a QueryDict: ``before``, ``after``
    or ``oldest``) asks for; raises CursorError for a cursor that cannot be read."""
    key = Tuple(F("created"), F("pk"))
    before, after = params.get("before"), params.get("after")
    if before:
        point = parse_cursor(before)
        rows = list(qs.filter(TupleLessThan(key, point)).order_by("-created", "-pk")[: size + 1])
        is_first, is_last = False, len(rows) <= size
        rows = rows[:size]
    elif after or params.get("oldest"):
        ascending = qs.order_by("created", "pk")
        if after:
            ascending = ascending.filter(TupleGreaterThan(key, parse_cursor(after)))
        rows = list(ascending[: size + 1])
        is_first, is_last = len(rows) <= size, not after
        rows = rows[:size][::-1]
    else:
        rows = list(qs.order_by("-created", "-pk")[: size + 1])
        is_first, is_last = True, len(rows) <= size
        rows = rows[:size]
    return KeysetPage(
        rows=rows,
        newer=None if is_first or not rows else cursor_of(rows[0]),
        older=None if is_last or not rows else cursor_of(rows[-1]),
        is_first=is_first,
        is_last=is_last,
    )
