#!/usr/bin/env python3
"""The demo repository's ``post-receive`` hook: tell the control plane about the push, as a
Gitea server would (a push event signed with the project's webhook secret, HMAC-SHA256 over
the body, in ``X-Gitea-Signature``).

Standard library only: Git runs it with whatever ``python3`` is on the pusher's PATH. Its
settings are in the bare repository's Git config (written by ``setup_demo``)::

    controlplane.url      the receiver, e.g. http://127.0.0.1:8000/hooks/gitea/demo-churn-model/
    controlplane.secret   the project's webhook secret
    controlplane.cloneurl the repository's URL, reported in the payload
    controlplane.timeout  seconds to wait for the control plane (default 5)

The push itself is already stored when this runs; if the control plane does not answer in
time the hook says so and exits 0, so a push never hangs on it for long.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

ZERO = "0" * 40


def git(*args: str) -> str:
    return subprocess.run(  # noqa: S603 - fixed arguments
        ["git", *args],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def config(name: str, default: str = "") -> str:
    try:
        return git("config", "--get", f"controlplane.{name}").strip()
    except subprocess.CalledProcessError:
        return default


def commit(sha: str, clone_url: str) -> dict:
    name, email, when, message = git("log", "-1", "--format=%an%x00%ae%x00%aI%x00%B", sha).split(
        "\x00", 3
    )
    author = {"name": name, "email": email, "username": ""}
    return {
        "id": sha,
        "message": message.strip() + "\n",
        "url": f"{clone_url}#{sha}",
        "author": author,
        "committer": author,
        "timestamp": when,
    }


def payload(old: str, new: str, ref: str, clone_url: str) -> dict:
    """A Gitea push payload (the fields a receiver reads)."""
    name = os.path.basename(clone_url.rstrip("/")).removesuffix(".git") or "repository"
    head = commit(new, clone_url) if new.strip("0") else None
    return {
        "ref": ref,
        "before": old,
        "after": new,
        "compare_url": "",
        "commits": [head] if head else [],
        "total_commits": 1 if head else 0,
        "head_commit": head,
        "repository": {
            "name": name,
            "full_name": f"demo/{name}",
            "html_url": clone_url,
            "clone_url": clone_url,
        },
        "pusher": {"login": os.environ.get("USER", ""), "username": os.environ.get("USER", "")},
    }


def sign(secret: str, body: bytes, delivery: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "controlplane-demo-hook/1",
        "X-Gitea-Event": "push",
        "X-Gitea-Event-Type": "push",
        "X-Gitea-Delivery": delivery,
        "X-Gitea-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


def deliver(url: str, secret: str, body: bytes, timeout: float) -> str:
    """POST one event; return a line for the pusher (Git shows it as ``remote: ...``)."""
    request = urllib.request.Request(  # noqa: S310 - the URL is the demo's own setting
        url, data=body, headers=sign(secret, body, str(uuid.uuid4())), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            answer = response.read(2000).decode("utf-8", "replace")
            return f"control plane: push delivered ({response.status}) {answer}"
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode("utf-8", "replace")
        return f"control plane: push refused ({exc.code}) {detail}"
    except (OSError, ValueError) as exc:  # refused, timed out, unreachable, bad URL
        reason = getattr(exc, "reason", exc)
        return (
            f"control plane: not reached at {url} ({reason}). The push is stored, but no "
            "pipeline started: start the control plane (make demo) and push again, or start "
            "a run from the project page."
        )


def main() -> int:
    url, secret = config("url"), config("secret")
    if not url or not secret:
        print("control plane: hook not configured (run `manage.py setup_demo`)", file=sys.stderr)
        return 0
    clone_url = config("cloneurl", "file://" + os.path.abspath(os.environ.get("GIT_DIR", ".")))
    try:
        timeout = float(config("timeout", "5"))
    except ValueError:
        timeout = 5.0
    for line in sys.stdin:
        parts = line.split()
        if len(parts) != 3:
            continue
        old, new, ref = parts
        body = json.dumps(payload(old, new, ref, clone_url)).encode()
        print(deliver(url, secret, body, timeout), file=sys.stderr, flush=True)
    return 0  # post-receive cannot undo a push: never fail it


if __name__ == "__main__":
    sys.exit(main())
