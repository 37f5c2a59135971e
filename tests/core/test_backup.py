"""Backup and restore (docs/backup.md): a backup restored into a fresh database and fresh store
folders by ``manage.py restore`` in another process holds every row and every file it was
made from; a non-empty target or a corrupted backup is refused and changes nothing."""

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from apps.core.backup import read_manifest
from apps.core.models import AuditEvent
from apps.pipelines.artifacts import bundle_store_put
from apps.pipelines.logs import LogWriter, log_path
from apps.pipelines.models import Artifact
from apps.releases.models import Approval
from apps.releases.services import promotion_approve, promotion_request, release_create

from ..factories import JobFactory, RunFactory

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def stores(tmp_path, settings):
    """Store folders of this test's own (the suite's are shared by every test)."""
    for setting, name in (
        ("JOB_LOG_DIR", "logs"),
        ("ARTIFACT_DIR", "artifacts"),
        ("DATASET_DIR", "datasets"),
        ("OBSERVATION_DIR", "observations"),
    ):
        setattr(settings, setting, tmp_path / "var" / name)
    return tmp_path / "var"


@pytest.fixture
def install(project, admin_user, member, stores):
    """An install with runs, jobs, logs, artifacts, a bundle, releases, approvals, audit rows,
    a dataset file and an observation file."""
    jobs = []
    for number in range(1, 4):
        run = RunFactory(project=project, number=number, status="succeeded")
        for name in ("test", "build"):
            job = JobFactory(run=run, name=name, status="succeeded")
            writer = LogWriter(log_path(job.pk, run.pk), secrets=["hunter2"])
            writer.write(f"run {number} job {name}\n\x1b[32mok\x1b[0m hunter2 é\n".encode())
            writer.close()
            content = os.urandom(4096) + name.encode()
            target = Path(settings.ARTIFACT_DIR) / str(run.pk) / str(job.pk) / "out/model.bin"
            target.parent.mkdir(parents=True)
            target.write_bytes(content)
            Artifact.objects.create(
                job=job, path="out/model.bin", size=len(content), sha256=sha256(target)
            )
            jobs.append(job)
    # The step cache hard-links a cached job's artifacts: a link stays a link.
    cached = Path(settings.ARTIFACT_DIR) / "cached" / "model.bin"
    cached.parent.mkdir()
    os.link(target, cached)
    bundle = stores / "bundle.tar.gz"
    bundle.write_bytes(b"bundle bytes" * 1000)
    digest = "sha256:" + sha256(bundle)
    bundle_store_put(bundle, digest)
    bundle.unlink()
    production = project.environments.get(name="production")
    production.required_approvals = 2
    production.save()
    for version in ("v1", "v2"):
        release = release_create(
            project=project,
            version=version,
            commit_sha="abc1234",
            bundle_digest=digest,
            actor=admin_user,
        )
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    promotion_approve(promotion=promotion, user=member("approver", "lead"), comment="looks good")
    for name, folder in (("datasets", "features/3"), ("observations", "env-1/2026120212")):
        path = stores / name / folder / "part.parquet"
        path.parent.mkdir(parents=True)
        path.write_bytes(os.urandom(2048))
    assert Approval.objects.count() == 1 and AuditEvent.objects.count() > 5
    return jobs


def store_files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def all_rows(cursor, tables) -> dict[str, list[str]]:
    rows = {}
    for table in tables:
        cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - introspected names
        rows[table] = sorted(repr(r) for r in cursor.fetchall())
    return rows


@pytest.fixture
def fresh_database():
    """A database nobody migrated (PostgreSQL: a second database next to the test one; SQLite:
    a new file), as the DATABASE_URL a fresh install would have, and ``connect(name)`` opening a
    plain driver connection (the restored one by default); dropped afterwards."""
    params = connection.settings_dict
    if connection.vendor == "postgresql":
        name = f"{params['NAME']}_restored"
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cursor.execute(f'CREATE DATABASE "{name}"')
        host, port = params.get("HOST") or "127.0.0.1", params.get("PORT") or 5432
        user = params.get("USER") or "postgres"
        import psycopg2

        def connect(dbname=name):
            return psycopg2.connect(
                host=host, port=port, user=user, password=params.get("PASSWORD"), dbname=dbname
            )

        yield f"postgres://{user}@{host}:{port}/{name}", connect
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        path = Path(params["NAME"]).with_name("restored.sqlite3")
        path.unlink(missing_ok=True)
        yield f"sqlite:///{path}", lambda dbname=path: sqlite3.connect(dbname)
        path.unlink(missing_ok=True)


def manage(*args: str, database_url: str, tmp: Path) -> subprocess.CompletedProcess:
    """``manage.py`` in a process of its own: the restoring install's database and folders."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings.test",
        "DATABASE_URL": database_url,
        "CONTROLPLANE_TEST_TMP": str(tmp),
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_restore_into_a_fresh_database_and_folder_keeps_everything(
    install, stores, tmp_path, fresh_database
):
    database_url, connect = fresh_database
    backup = tmp_path / "backup"
    call_command("backup", str(backup))
    manifest = read_manifest(backup)
    assert manifest["database"]["vendor"] == connection.vendor
    assert manifest["database"]["row_counts"]["releases_approval"] == 1
    # Six artifacts, one hard link to the last, one bundle.
    assert len(manifest["stores"]["artifacts"]["files"]) == 6 + 1 + 1

    fresh = tmp_path / "fresh"  # the restoring install's var folder (test settings: _TMP)
    done = manage("restore", str(backup), database_url=database_url, tmp=fresh)
    assert done.returncode == 0, done.stderr
    assert "digests verified" in done.stdout and "match the manifest" in done.stdout

    # Every row of every table, as in the database the backup was made from (both read through
    # the plain driver: Django's connection leaves JSON undecoded).
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
    rows = []
    for name in (connection.settings_dict["NAME"], None):
        db = connect(name) if name else connect()
        try:
            rows.append(all_rows(db.cursor(), tables))
        finally:
            db.close()
    original, restored = rows
    assert restored == original
    assert len(original["pipelines_pipelinerun"]) == 3
    assert len(original["pipelines_job"]) == 6
    assert len(original["releases_release"]) == 2
    assert len(original["core_auditevent"]) == AuditEvent.objects.count() > 5

    # Every file of every store, byte for byte; the artifacts match their rows' digests.
    for name in ("logs", "artifacts", "datasets", "observations"):
        assert store_files(fresh / name) == store_files(stores / name), name
    for job in install:
        assert (
            (fresh / "logs" / str(job.run_id) / f"{job.pk}.log")
            .read_text()
            .startswith(f"run {job.run.number} job {job.name}\n")
        )
        artifact = Artifact.objects.get(job=job)
        restored_file = fresh / "artifacts" / str(job.run_id) / str(job.pk) / artifact.path
        assert sha256(restored_file) == artifact.sha256

    # The restored install itself reads its rows (through its own settings and migrations).
    done = manage(
        "shell",
        "-c",
        "from apps.releases.models import Approval; a = Approval.objects.get(); "
        "print(a.user.username, a.comment, a.promotion.release.version)",
        database_url=database_url,
        tmp=fresh,
    )
    assert done.stdout.strip().splitlines()[-1] == "lead looks good v2", done.stderr


def test_restore_refuses_a_database_or_folder_with_data(install, stores, tmp_path):
    backup = tmp_path / "backup"
    call_command("backup", str(backup))
    before = (AuditEvent.objects.count(), store_files(stores / "logs"))
    # The test database holds this install and its folders are full: both named, nothing done.
    with pytest.raises(CommandError, match="refusing to restore over data") as refused:
        call_command("restore", str(backup))
    assert "tables" in str(refused.value) and "logs folder" in str(refused.value)
    assert (AuditEvent.objects.count(), store_files(stores / "logs")) == before
    # A backup folder is never written over either.
    with pytest.raises(CommandError, match="is not empty"):
        call_command("backup", str(backup))


def test_restore_refuses_a_corrupted_backup(install, stores, tmp_path, fresh_database):
    database_url, connect = fresh_database
    backup = tmp_path / "backup"
    call_command("backup", str(backup))
    archive = backup / "artifacts.tar"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    fresh = tmp_path / "fresh"
    done = manage("restore", str(backup), database_url=database_url, tmp=fresh)
    assert done.returncode != 0
    assert "artifacts.tar does not match its digest" in done.stderr
    restored_db = connect()
    try:
        cursor = restored_db.cursor()
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'"
            if connection.vendor == "postgresql"
            else "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
        )
        assert cursor.fetchone()[0] == 0  # refused before anything was written
    finally:
        restored_db.close()
    assert not (fresh / "artifacts").exists()
