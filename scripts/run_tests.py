#!/usr/bin/env python3
"""Run the test suite on the right stack, and say which.

- ``CI=true``: PostgreSQL and Redis on 127.0.0.1 (or DATABASE_URL / REDIS_URL) are required; if
  either is unreachable this fails at once instead of skipping anything.
- Otherwise, when both answer on 127.0.0.1 (the usual developer machine), the tests run on them
  too, the production stack; when either does not, on SQLite and the embedded (filesystem)
  broker, so the suite runs anywhere. ``TEST_STACK=embedded`` or ``TEST_STACK=production``
  chooses explicitly (production then requires both, like CI).
"""

import os
import socket
import subprocess
import sys
from urllib.parse import urlparse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def reachable(url: str, default_port: int) -> str | None:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=3):
            return None
    except OSError as exc:
        return f"{host}:{port} ({exc})"


def main() -> int:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "controlplane.settings.test"
    ci = env.get("CI", "").lower() in ("1", "true", "yes")
    choice = env.get("TEST_STACK", "").lower()
    if choice not in ("", "embedded", "production"):
        print(f"ERROR: TEST_STACK={choice!r}: say embedded or production", file=sys.stderr)
        return 2
    explicit = "DATABASE_URL" in env or "REDIS_URL" in env
    why = ""
    if ci or choice == "production":
        env.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
        env.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
        why = "CI=true" if ci else "TEST_STACK=production"
    elif not choice and not explicit:
        if (
            reachable(DEFAULT_DATABASE_URL, 5432) is None
            and reachable(DEFAULT_REDIS_URL, 6379) is None
        ):
            env["DATABASE_URL"] = DEFAULT_DATABASE_URL
            env["REDIS_URL"] = DEFAULT_REDIS_URL
            why = "found on 127.0.0.1; TEST_STACK=embedded for SQLite"
        else:
            why = "no PostgreSQL + Redis on 127.0.0.1"
    elif choice == "embedded":
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        why = "TEST_STACK=embedded"
    problems = []
    if env.get("DATABASE_URL", "").startswith("postgres"):
        err = reachable(env["DATABASE_URL"], 5432)
        if err:
            problems.append(f"PostgreSQL is unreachable at {err}")
    if env.get("REDIS_URL"):
        err = reachable(env["REDIS_URL"], 6379)
        if err:
            problems.append(f"Redis is unreachable at {err}")
    if problems:
        for p in problems:
            print(f"ERROR: {p}", file=sys.stderr)
        print(
            "The tests need these services; start them (see README) and try again.", file=sys.stderr
        )
        return 2
    db = urlparse(env.get("DATABASE_URL", "sqlite://")).scheme or "sqlite"
    broker = "redis" if env.get("REDIS_URL") else "filesystem (embedded)"
    print(f"Test stack: database={db} broker={broker}" + (f" ({why})" if why else ""), flush=True)
    cmd = [sys.executable, "-m", "pytest", *sys.argv[1:]]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
