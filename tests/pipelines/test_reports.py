"""apps.pipelines.reports: JUnit XML summaries, parsed safely. No database."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from apps.pipelines.reports import (
    MAX_BYTES,
    MAX_FAILED_CASES,
    MAX_TEXT,
    JUnitReportError,
    parse_junit,
)

PYTEST_SAMPLE = """
import pytest


@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")


def test_pass():
    assert True


def test_fail():
    assert 1 + 1 == 3, "math is broken"


def test_error(broken):
    pass


def test_skip():
    pytest.skip("not today")
"""


@pytest.fixture(scope="module", params=["xunit2", "xunit1"])
def pytest_report(request, tmp_path_factory):
    """A JUnit XML written by a real pytest run (1 pass, 1 fail, 1 error, 1 skip)."""
    work = tmp_path_factory.mktemp(f"junit-{request.param}")
    (work / "pytest.ini").write_text("[pytest]\n")  # keep it out of this project's config
    (work / "test_sample.py").write_text(PYTEST_SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:django", "-p", "no:cacheprovider"]
        + ["-p", "no:xdist", "-o", f"junit_family={request.param}", "--junitxml=junit.xml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return request.param, work / "junit.xml"


def test_real_pytest_report(pytest_report):
    family, path = pytest_report
    s = parse_junit(path)
    assert (s.tests, s.passed, s.failures, s.errors, s.skipped) == (4, 1, 1, 1, 1)
    assert not s.ok
    assert 0 < s.time < 60
    fail, error = s.failed_cases
    assert (fail.kind, fail.classname, fail.name) == ("failure", "test_sample", "test_fail")
    assert fail.message.startswith("AssertionError: math is broken")
    assert "assert 1 + 1 == 3" in fail.text and "test_sample.py:15: AssertionError" in fail.text
    assert (error.kind, error.name) == ("error", "test_error")
    assert "fixture exploded" in error.message and "RuntimeError" in error.text
    if family == "xunit1":  # pytest's xunit1 adds file and (0-based) line
        assert (fail.file, fail.line) == ("test_sample.py", 13)
    else:
        assert (fail.file, fail.line) == (None, None)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["failures"] == 1 and d["failed_cases"][1]["kind"] == "error"


def test_reads_bytes_and_str_paths(pytest_report):
    _, path = pytest_report
    assert parse_junit(path.read_bytes()) == parse_junit(str(path)) == parse_junit(path)


JAVA_SAMPLE = textwrap.dedent("""\
    <?xml version="1.0" encoding="UTF-8"?>
    <testsuites name="all" tests="6" failures="1" errors="1" skipped="1" time="3.5">
      <testsuite name="com.acme.AllTests" tests="6" time="3.5">
        <testsuite name="com.acme.MathTest" tests="3" failures="1" errors="0" skipped="1"
                   time="1,234.5" timestamp="2024-01-01T00:00:00" hostname="ci">
          <properties><property name="java.version" value="21"/></properties>
          <testcase name="adds" classname="com.acme.MathTest" time="0.01"/>
          <testcase name="divides" classname="com.acme.MathTest" time="0.02">
            <failure message="expected:&lt;2&gt; but was:&lt;3&gt;"
                     type="org.opentest4j.AssertionFailedError"><![CDATA[
    org.opentest4j.AssertionFailedError: expected: <2> but was: <3>
        at com.acme.MathTest.divides(MathTest.java:42)
    ]]></failure>
            <system-out>divide called</system-out>
          </testcase>
          <testcase name="later" classname="com.acme.MathTest"><skipped/></testcase>
        </testsuite>
        <testsuite name="com.acme.IoTest" tests="3" failures="0" errors="1" time="2.0">
          <testcase name="reads" classname="com.acme.IoTest" time="0.5"/>
          <testcase name="writes" classname="com.acme.IoTest" time="0.5">
            <error type="java.io.IOException">java.io.IOException: disk full
        at com.acme.IoTest.writes(IoTest.java:7)</error>
          </testcase>
          <testcase name="flaky" classname="com.acme.IoTest" time="1.0">
            <flakyFailure message="timeout" type="java.lang.AssertionError"/>
          </testcase>
        </testsuite>
      </testsuite>
    </testsuites>
    """)


def test_java_style_report_with_nested_suites():
    s = parse_junit(JAVA_SAMPLE.encode())
    assert (s.tests, s.passed, s.failures, s.errors, s.skipped) == (6, 3, 1, 1, 1)
    assert s.time == 3.5
    fail, error = s.failed_cases
    assert fail.classname == "com.acme.MathTest" and fail.name == "divides"
    assert fail.message == "expected:<2> but was:<3>"
    assert fail.type == "org.opentest4j.AssertionFailedError"
    assert fail.text.startswith("org.opentest4j.AssertionFailedError: expected: <2>")
    assert "MathTest.java:42" in fail.text
    assert (error.kind, error.type, error.message) == ("error", "java.io.IOException", "")
    assert error.text.startswith("java.io.IOException: disk full")


def test_bare_testsuite_root_and_time_fallbacks():
    xml = b"""<testsuite name="x" tests="2" time="1,234.5">
      <testcase name="a" time="0.5"/><testcase name="b"><failure>boom</failure></testcase>
    </testsuite>"""
    s = parse_junit(xml)
    assert (s.tests, s.passed, s.failures, s.time) == (2, 1, 1, 1234.5)
    assert s.failed_cases[0].text == "boom" and s.failed_cases[0].message == ""
    no_suite_time = b'<testsuites><testsuite><testcase time="0.25"/><testcase time="0.5"/>'
    assert parse_junit(no_suite_time + b"</testsuite></testsuites>").time == 0.75


def test_counts_only_report_uses_suite_attributes():
    xml = b"""<testsuites>
      <testsuite tests="10" failures="2" errors="1" skipped="3" time="1"/>
      <testsuite tests="5" failures="0" errors="0" disabled="1" time="2"/>
    </testsuites>"""
    s = parse_junit(xml)
    assert (s.tests, s.failures, s.errors, s.skipped, s.passed, s.time) == (15, 2, 1, 4, 8, 3.0)
    assert s.failed_cases == []


def test_junk_numbers_are_zero_and_json_stays_strict():
    xml = b'<testsuite tests="x" time="nan"><testcase time="inf" line="-3"/></testsuite>'
    s = parse_junit(xml)
    assert (s.tests, s.passed, s.time) == (1, 1, 0.0)
    json.dumps(s.to_dict(), allow_nan=False)


def test_empty_report_passes():
    s = parse_junit(b"<testsuites/>")
    assert (s.tests, s.passed, s.time) == (0, 0, 0.0) and s.ok


def test_failed_cases_are_capped_and_texts_truncated():
    failure = f'<failure message="m">{"x" * 5000}</failure>'
    cases = "".join(
        f'<testcase classname="c" name="t{i}">{failure}</testcase>'
        for i in range(MAX_FAILED_CASES + 20)
    )
    s = parse_junit(f"<testsuite>{cases}</testsuite>".encode())
    assert s.failures == MAX_FAILED_CASES + 20
    assert len(s.failed_cases) == MAX_FAILED_CASES
    assert len(s.failed_cases[0].text) == MAX_TEXT


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<testsuite><testcase name="a"><failure message="&lol9;">&lol9;</failure></testcase></testsuite>
"""


def test_billion_laughs_is_refused_without_expansion():
    t0 = time.perf_counter()
    with pytest.raises(JUnitReportError, match="DOCTYPE"):
        parse_junit(BILLION_LAUGHS)
    assert time.perf_counter() - t0 < 0.5


def test_billion_laughs_in_utf16_is_refused():
    """A byte-level search for '<!DOCTYPE' would miss this one; expat's handlers do not."""
    data = BILLION_LAUGHS.decode().replace('"1.0"?>', '"1.0" encoding="UTF-16"?>', 1)
    with pytest.raises(JUnitReportError, match="DOCTYPE"):
        parse_junit(data.encode("utf-16"))


def test_external_entity_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    xxe = f"""<?xml version="1.0"?>
<!DOCTYPE testsuite [<!ENTITY xxe SYSTEM "file://{secret}">]>
<testsuite><testcase name="a"><failure message="x">&xxe;</failure></testcase></testsuite>"""
    with pytest.raises(JUnitReportError) as info:
        parse_junit(xxe.encode())
    assert "TOP-SECRET-VALUE" not in str(info.value)


def test_parameter_entity_and_bare_doctype_are_refused():
    pe = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "http://example.invalid/x.dtd">
    %p;]><testsuite/>"""
    with pytest.raises(JUnitReportError, match="DOCTYPE"):
        parse_junit(pe)
    with pytest.raises(JUnitReportError, match="DOCTYPE"):
        parse_junit(b'<!DOCTYPE testsuite SYSTEM "junit.dtd"><testsuite/>')


def test_oversized_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "huge.xml"
    with open(big, "wb") as fh:
        fh.truncate(MAX_BYTES + 1)  # sparse: nothing is really written or read
    with pytest.raises(JUnitReportError, match="larger than"):
        parse_junit(big)


def test_oversized_bytes_and_custom_cap():
    xml = b"<testsuite>" + b"<testcase/>" * 100 + b"</testsuite>"
    assert parse_junit(xml, max_bytes=len(xml)).tests == 100
    with pytest.raises(JUnitReportError, match="larger than"):
        parse_junit(xml, max_bytes=len(xml) - 1)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not well-formed"),
        (b"<testsuite><testcase></testsuite>", "not well-formed"),
        (b"not xml at all", "not well-formed"),
        (b"<html><body/></html>", "root element is <html>"),
    ],
)
def test_malformed_or_foreign_documents(data, match):
    with pytest.raises(JUnitReportError, match=match):
        parse_junit(data)


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        parse_junit(tmp_path / "nope.xml")
