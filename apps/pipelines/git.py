"""Git workspaces: one bare mirror per project, fetched incrementally; each job gets a clean
checkout of the exact commit (a shared clone of the mirror: no objects copied)."""

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from apps.projects.models import Project
from apps.projects.repositories import repository_url_check

SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")
MAX_SPEC_FILE = 256 * 1024


class GitError(Exception):
    """A git command failed; the message is shown on the run."""


def _env() -> dict[str, str]:
    # Never prompt (a worker has no terminal) and never read the worker's own git config.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(Path(settings.WORKSPACE_DIR)),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LANG": "C.UTF-8",
    }


def git(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 600,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    # git from PATH; arguments are a list, never through a shell.
    result = subprocess.run(  # noqa: S603
        ["git", *args],  # noqa: S607
        cwd=cwd,
        env=_env(),
        capture_output=True,
        timeout=timeout,
        input=input,
        check=False,
    )
    if check and result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {' '.join(message[-3:]) or result.returncode}")
    return result


def mirror_path(project: Project) -> Path:
    return Path(settings.WORKSPACE_DIR) / "mirrors" / f"{project.pk}.git"


@contextmanager
def _mirror_lock(project: Project) -> Iterator[None]:
    """One fetch at a time per project on this host (workers share the mirror)."""
    lock = mirror_path(project).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def has_commit(project: Project, sha: str) -> bool:
    path = mirror_path(project)
    if not path.exists():
        return False
    return git("cat-file", "-e", f"{sha}^{{commit}}", cwd=path, check=False).returncode == 0


def mirror_update(project: Project, *, want: str = "", lacking: bool = False) -> Path:
    """Make sure the mirror exists and holds ``want`` (a sha); fetch only when needed.
    ``lacking``: the caller just found the mirror without ``want``, so it is not asked again
    before the lock (under the lock it is: another worker may have fetched it meanwhile).

    Fetched from the project's URL as it is now (a mirror's refspec, given on the command
    line), whatever URL the mirror was cloned from; no automatic maintenance afterwards (one
    process less on the way to a pushed commit's first job; gc is off in mirrors anyway)."""
    if not project.repository_url:
        raise GitError("The project has no repository URL.")
    try:  # again here: the install's settings or a symlink may have changed since it was set
        repository_url_check(project.repository_url)
    except ValidationError as exc:
        raise GitError(f"Repository URL refused: {' '.join(exc.messages)}") from None
    path = mirror_path(project)
    wanted = bool(want and SHA_RE.match(want))
    if wanted and not lacking and has_commit(project, want):
        return path  # commits are immutable: what the mirror has is right, whatever the URL
    with _mirror_lock(project):
        if not (path / "HEAD").exists():
            shutil.rmtree(path, ignore_errors=True)
            git("clone", "--mirror", "--quiet", "--", project.repository_url, str(path))
            # No automatic gc: job checkouts borrow objects from the mirror.
            git("config", "gc.auto", "0", cwd=path)
        else:
            if wanted and has_commit(project, want):
                return path  # another worker fetched it while we waited for the lock
            git(
                "fetch",
                "--prune",
                "--quiet",
                "--no-auto-maintenance",
                "--",
                project.repository_url,
                "+refs/*:refs/*",
                cwd=path,
            )
    return path


def on_ref(project: Project, sha: str, ref: str) -> bool:
    """Whether commit ``sha`` is in the history of the branch ``ref`` or is the tag ``ref``,
    in the mirror (no fetch): what makes a run of a protected ref one that may get protected
    variables, since the sha and the ref of a manual run are both the caller's to choose."""
    path = mirror_path(project)
    if not SHA_RE.match(sha or "") or not ref or ref.startswith("-"):
        return False
    if _refs(path).get(f"refs/heads/{ref}") == sha:
        return True  # the branch's head (a push): no git process to ask
    for full, tag in ((f"refs/heads/{ref}", False), (f"refs/tags/{ref}", True)):
        head = git("rev-parse", "--verify", "--quiet", f"{full}^{{commit}}", cwd=path, check=False)
        if head.returncode != 0:
            continue
        head_sha = head.stdout.decode().strip()
        if tag:
            return head_sha == sha
        ancestor = git("merge-base", "--is-ancestor", sha, head_sha, cwd=path, check=False)
        return ancestor.returncode == 0
    return False


def resolve(project: Project, ref: str) -> str:
    """The commit sha a branch, tag or sha names in the mirror."""
    path = mirror_path(project)
    for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
        result = git(
            "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", cwd=path, check=False
        )
        if result.returncode == 0:
            return result.stdout.decode().strip()
    raise GitError(f"'{ref}' is not a branch, tag or commit of {project.repository_url}.")


def commit_info(project: Project, sha: str) -> dict[str, str]:
    out = git("show", "-s", "--format=%H%x00%an%x00%ae%x00%B", sha, cwd=mirror_path(project))
    full, name, email, message = out.stdout.decode(errors="replace").split("\x00", 3)
    return {"sha": full, "author": name, "author_email": email, "message": message.strip()}


def read_file(project: Project, sha: str, name: str) -> bytes | None:
    """The file ``name`` at commit ``sha``, or None if it is not there."""
    path = mirror_path(project)
    size = git("cat-file", "-s", f"{sha}:{name}", cwd=path, check=False)
    if size.returncode != 0:
        return None
    if int(size.stdout.strip() or 0) > MAX_SPEC_FILE:
        raise GitError(f"{name} is larger than {MAX_SPEC_FILE // 1024} KB.")
    return git("cat-file", "blob", f"{sha}:{name}", cwd=path).stdout


_AUTHOR_RE = re.compile(r"^author (.*) <(.*)> \d+ [+-]\d{4}$")


def commit_and_file(project: Project, sha: str, name: str) -> tuple[dict[str, str], bytes | None]:
    """:func:`commit_info` and :func:`read_file` of ``sha`` in ONE git process
    (``cat-file --batch``), fetching into the mirror first when it lacks the commit.

    Returns the commit's sha, author, author_email and message, and the file (None when the
    commit has no file ``name``). Raises :class:`GitError` when the commit cannot be had or the
    file is larger than ``MAX_SPEC_FILE``.
    """
    if SHA_RE.match(sha) and (mirror_path(project) / "HEAD").exists():
        found = _batch_commit_and_file(project, sha, name)
        if found is not None:
            return found
    mirror_update(project, want=sha, lacking=True)
    found = _batch_commit_and_file(project, sha, name)
    if found is None:
        raise GitError(f"Commit {sha[:12]} is not in {project.repository_url}.")
    return found


def _batch_commit_and_file(
    project: Project, sha: str, name: str
) -> tuple[dict[str, str], bytes | None] | None:
    """None when the mirror lacks the commit."""
    proc = subprocess.Popen(  # noqa: S603
        ["git", "cat-file", "--batch"],  # noqa: S607
        cwd=mirror_path(project),
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.stdin.write(f"{sha}^{{commit}}\n{sha}:{name}\n".encode())
        proc.stdin.close()
        objects = []
        for _ in range(2):
            header = proc.stdout.readline().split()
            if len(header) != 3:  # "<what> missing" (or ambiguous)
                objects.append(None)
                continue
            full, kind, size = header[0].decode(), header[1].decode(), int(header[2])
            if kind == "blob" and size > MAX_SPEC_FILE:
                raise GitError(f"{name} is larger than {MAX_SPEC_FILE // 1024} KB.")
            objects.append((full, kind, proc.stdout.read(size)))
            proc.stdout.read(1)  # the newline after each object
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    commit, blob = objects
    if commit is None or commit[1] != "commit":
        return None
    return _parse_commit(commit[0], commit[2]), blob[2] if blob and blob[1] == "blob" else None


def _parse_commit(sha: str, raw: bytes) -> dict[str, str]:
    """The fields :func:`commit_info` gives, from a raw commit object."""
    text = raw.decode(errors="replace")
    headers, _, message = text.partition("\n\n")
    name = email = ""
    for line in headers.splitlines():
        if match := _AUTHOR_RE.match(line):
            name, email = match.groups()
            break
    return {"sha": sha, "author": name, "author_email": email, "message": message.strip()}


def checkout(project: Project, sha: str, dest: Path) -> None:
    """A clean working tree of exactly ``sha`` at ``dest`` (which must not exist).

    What ``git clone --shared --no-checkout <mirror>`` + ``git checkout --detach <sha>`` make
    (objects borrowed from the mirror through ``objects/info/alternates``, the mirror as
    ``origin`` with its branches as ``origin/*`` and its tags, a detached HEAD), but written
    here and filled by ONE ``git read-tree``: ``clone`` alone costs a shell and an
    upload-pack process, the largest part of a short job's time.

    Raises :class:`GitError` when the mirror lacks ``sha`` (the caller fetches and retries).
    """
    mirror = mirror_path(project).resolve()
    if not SHA_RE.match(sha) or not (mirror / "HEAD").exists():
        raise GitError(f"Commit {sha[:12]} is not in the repository copy.")
    dot = dest / ".git"
    for sub in ("objects/info", "objects/pack", "refs/heads", "refs/tags", "refs/remotes/origin"):
        (dot / sub).mkdir(parents=True)
    (dot / "objects" / "info" / "alternates").write_text(f"{mirror / 'objects'}\n")
    (dot / "config").write_text(
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
        "\tlogallrefupdates = true\n"
        f'[remote "origin"]\n\turl = {mirror}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n'
    )
    (dot / "description").write_text("A job's checkout.\n")
    refs = _refs(mirror)
    lines = [
        f"{value} refs/remotes/origin/{name.removeprefix('refs/heads/')}\n"
        if name.startswith("refs/heads/")
        else f"{value} {name}\n"
        for name, value in sorted(refs.items())
        if name.startswith(("refs/heads/", "refs/tags/"))
    ]
    # No "peeled" trait: git peels annotated tags itself when it needs to.
    (dot / "packed-refs").write_text("".join(lines))
    head = (mirror / "HEAD").read_text().strip()
    if head.startswith("ref: refs/heads/"):
        branch = head.removeprefix("ref: refs/heads/")
        (dot / "refs" / "remotes" / "origin" / "HEAD").write_text(
            f"ref: refs/remotes/origin/{branch}\n"
        )
    (dot / "HEAD").write_text(f"{sha}\n")  # detached at the commit
    try:
        git("read-tree", "--reset", "-u", f"{sha}^{{tree}}", cwd=dest)
    except GitError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    if len(sha) < 40:  # HEAD must hold the full sha
        full = git("rev-parse", "--verify", f"{sha}^{{commit}}", cwd=dest).stdout.decode().strip()
        (dot / "HEAD").write_text(f"{full}\n")


def _refs(repo: Path) -> dict[str, str]:
    """The refs of a bare repository (packed, then loose ones over them) without a git
    process: name → sha (symbolic loose refs are left out)."""
    refs: dict[str, str] = {}
    try:
        packed = (repo / "packed-refs").read_text()
    except FileNotFoundError:
        packed = ""
    for line in packed.splitlines():
        if line and line[0] not in "#^":
            value, _, name = line.partition(" ")
            refs[name] = value
    for path in (repo / "refs").rglob("*"):
        if path.is_file() and not path.name.endswith(".lock"):
            value = path.read_text().strip()
            if SHA_RE.match(value):
                refs[path.relative_to(repo).as_posix()] = value
    return refs


def checkout_commit(project: Project, sha: str, dest: Path) -> None:
    """:func:`checkout`, fetching into the mirror first when it lacks ``sha`` (commits are
    immutable: when the mirror has it, it is right)."""
    try:
        checkout(project, sha, dest)
        return
    except GitError:
        shutil.rmtree(dest, ignore_errors=True)
    mirror_update(project, want=sha, lacking=True)
    checkout(project, sha, dest)


def tracked_files(worktree: Path) -> list[str]:
    """The files of the commit checked out at ``worktree`` (``git ls-files``)."""
    out = git("ls-files", "-z", "--cached", cwd=worktree).stdout
    return [name for name in out.decode().split("\0") if name]


# One record per commit: fields split by NUL, records by the ASCII record separator.
_LOG_FORMAT = "%H%x00%an%x00%ae%x00%aI%x00%s%x1e"


def commits_between(
    project: Project, base_sha: str, head_sha: str, limit: int = 100
) -> list[dict[str, Any]]:
    """Commits reachable from ``head_sha`` but not from ``base_sha``, newest first, at most
    ``limit``: what a deploy of ``head_sha`` adds to an environment serving ``base_sha``.

    With no usable base (first deploy, or a commit the mirror lacks) it is the last ``limit``
    commits up to ``head_sha``. Reads the mirror only, never fetches; raises :class:`GitError`
    when there is no mirror or it lacks ``head_sha``.
    """
    path = mirror_path(project)
    if not (path / "HEAD").exists():
        raise GitError("There is no copy of the repository here yet (no pipeline has run).")
    if not SHA_RE.match(head_sha or "") or not has_commit(project, head_sha):
        raise GitError(f"Commit {(head_sha or '')[:12] or '(none)'} is not in the repository copy.")
    revisions = [head_sha]
    if base_sha and SHA_RE.match(base_sha) and has_commit(project, base_sha):
        revisions.append(f"^{base_sha}")
    out = git(
        "log",
        f"--max-count={max(int(limit), 1)}",
        f"--format={_LOG_FORMAT}",
        *revisions,
        "--",
        cwd=path,
    )
    commits = []
    for record in out.stdout.decode(errors="replace").split("\x1e"):
        fields = record.strip("\n").split("\x00")
        if len(fields) != 5:
            continue
        sha, author, email, date, subject = fields
        commits.append(
            {
                "sha": sha,
                "author": author,
                "author_email": email,
                "date": datetime.fromisoformat(date),
                "subject": subject,
            }
        )
    return commits


def tree_ids(project: Project, sha: str, paths: list[str]) -> dict[str, str | None]:
    """The object id of each path at commit ``sha`` (a tree for a folder, a blob for a file;
    ``""`` is the root tree), or None where the commit has no such path: what
    ``git rev-parse <sha>:<path>`` answers, for every path in ONE ``git cat-file
    --batch-check``. Fetches into the mirror first when it lacks the commit; raises
    :class:`GitError` when it cannot be had.

    Kept per process: a commit's content never changes, so neither do these answers (the
    jobs of one run ask for the same commit's trees, each for its step-cache key)."""
    key = (sha, tuple(paths))  # content-addressed: whichever project's mirror answered
    if key not in _TREE_IDS:
        if len(_TREE_IDS) >= TREE_IDS_KEPT:
            _TREE_IDS.pop(next(iter(_TREE_IDS), None), None)  # the oldest
        _TREE_IDS[key] = _tree_ids(project, sha, paths)
    return dict(_TREE_IDS[key])


#: How many (commit, paths) answers of :func:`tree_ids` a process keeps.
TREE_IDS_KEPT = 1024
_TREE_IDS: dict[tuple[str, tuple[str, ...]], dict[str, str | None]] = {}


def _tree_ids(project: Project, sha: str, paths: list[str]) -> dict[str, str | None]:
    if not SHA_RE.match(sha or ""):
        raise GitError(f"Not a commit sha: {sha!r}.")
    names = [p.strip().strip("/").removeprefix("./") for p in paths]
    if any("\n" in name for name in names):
        raise GitError("A path holds a newline.")
    lines = [f"{sha}^{{commit}}"]  # first: is the commit there at all
    lines += [f"{sha}^{{tree}}" if not name else f"{sha}:{name}" for name in names]
    query = "".join(f"{line}\n" for line in lines).encode()
    answers = _batch_check(project, query)
    if not answers[0].endswith(" commit"):  # the mirror lacks it (or there is no mirror)
        mirror_update(project, want=sha, lacking=True)
        answers = _batch_check(project, query)
        if not answers[0].endswith(" commit"):
            raise GitError(f"Commit {sha[:12]} is not in {project.repository_url}.")
    found: dict[str, str | None] = {}
    for path, answer in zip(paths, answers[1:], strict=True):
        oid, _, kind = answer.rpartition(" ")
        found[path] = oid if kind in ("tree", "blob", "commit") else None
    return found


def _batch_check(project: Project, query: bytes) -> list[str]:
    """``git cat-file --batch-check`` answers (``<oid> <type>`` or ``<name> missing``) per
    line of ``query``; all "missing" when there is no mirror yet."""
    if not (mirror_path(project) / "HEAD").exists():
        return [f"{line} missing" for line in query.decode().splitlines()]
    out = git(
        "cat-file",
        "--batch-check=%(objectname) %(objecttype)",
        cwd=mirror_path(project),
        input=query,
    )
    return out.stdout.decode().splitlines()
