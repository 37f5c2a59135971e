"""Summaries of JUnit XML test reports (pytest's and Java's), parsed safely.

The files come from user code, so: at most ``MAX_BYTES``, and any DOCTYPE or entity
declaration is refused before anything is expanded or fetched (what ``defusedxml`` does,
with the stdlib's expat alone).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET  # noqa: S405 (only fed by the hardened expat parser below)
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from xml.parsers import expat

MAX_BYTES = 20 * 1024 * 1024
MAX_FAILED_CASES = 50
MAX_TEXT = 2000


class JUnitReportError(ValueError):
    """The report is unsafe, too large, not XML or not JUnit."""


@dataclass(frozen=True)
class FailedCase:
    classname: str
    name: str
    kind: str  # "failure" or "error"
    message: str
    type: str
    text: str  # the traceback / stack trace, first MAX_TEXT characters
    file: str | None = None
    line: int | None = None


@dataclass
class JUnitSummary:
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    passed: int = 0
    time: float = 0.0
    failed_cases: list[FailedCase] = field(default_factory=list)  # first MAX_FAILED_CASES

    @property
    def ok(self) -> bool:
        return self.failures == 0 and self.errors == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _refuse(*_args: object) -> NoReturn:
    raise JUnitReportError("DOCTYPE and ENTITY declarations are not allowed in a JUnit report")


def _parse_xml(data: bytes) -> ET.Element:
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse  # refuses before any entity is declared
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise JUnitReportError(f"not well-formed XML: {exc}") from None
    return builder.close()


def _read(source: str | os.PathLike[str] | bytes, max_bytes: int) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if path.stat().st_size > max_bytes:
            raise JUnitReportError(f"report is larger than {max_bytes} bytes")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)  # the file may grow between stat and read
    if len(data) > max_bytes:
        raise JUnitReportError(f"report is larger than {max_bytes} bytes")
    return data


def _float(value: str | None) -> float:
    try:
        number = float((value or "0").replace(",", ""))  # some tools write "1,234.5"
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0


def _int(value: str | None) -> int:
    return int(_float(value))


def parse_junit(
    source: str | os.PathLike[str] | bytes, *, max_bytes: int = MAX_BYTES
) -> JUnitSummary:
    """Parse a JUnit XML report (a path, or its bytes).

    Raises ``JUnitReportError`` for an unsafe, oversized, malformed or non-JUnit document
    and ``OSError`` when the file cannot be read.
    """
    root = _parse_xml(_read(source, max_bytes))
    if root.tag not in ("testsuites", "testsuite"):
        raise JUnitReportError(f"not a JUnit report: root element is <{root.tag}>")
    s = JUnitSummary()
    for case in root.iter("testcase"):
        s.tests += 1
        outcome = next(
            (c for tag in ("failure", "error", "skipped") if (c := case.find(tag)) is not None),
            None,
        )
        if outcome is None:
            continue
        if outcome.tag == "skipped":
            s.skipped += 1
            continue
        if outcome.tag == "failure":
            s.failures += 1
        else:
            s.errors += 1
        if len(s.failed_cases) < MAX_FAILED_CASES:
            line = case.get("line", "")
            s.failed_cases.append(
                FailedCase(
                    classname=case.get("classname", ""),
                    name=case.get("name", ""),
                    kind=outcome.tag,
                    message=outcome.get("message", "")[:MAX_TEXT],
                    type=outcome.get("type", ""),
                    text=(outcome.text or "").strip()[:MAX_TEXT],
                    file=case.get("file"),
                    line=int(line) if line.isdigit() else None,
                )
            )
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    if s.tests == 0:  # a report with counts only
        s.tests = sum(_int(x.get("tests")) for x in suites)
        s.failures = sum(_int(x.get("failures")) for x in suites)
        s.errors = sum(_int(x.get("errors")) for x in suites)
        s.skipped = sum(_int(x.get("skipped") or x.get("disabled")) for x in suites)
    s.passed = max(s.tests - s.failures - s.errors - s.skipped, 0)
    if root.tag == "testsuites" and root.get("time"):
        s.time = _float(root.get("time"))
    else:
        s.time = sum(_float(x.get("time")) for x in suites) or sum(
            _float(c.get("time")) for c in root.iter("testcase")
        )
    s.time = round(s.time, 6)
    return s
