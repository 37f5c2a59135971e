"""Backup and restore of an install: the database and the file stores (docs/backup.md).

A backup is a folder::

    manifest.json        format, versions, migration state, row counts, every file's sha256
    database.dump        pg_dump --format=custom (PostgreSQL) — or database.sqlite3 (SQLite)
    logs.tar             JOB_LOG_DIR            (job logs)
    artifacts.tar        ARTIFACT_DIR           (artifacts and bundles/)
    datasets.tar         DATASET_DIR            (dataset versions)
    observations.tar     OBSERVATION_DIR        (monitoring observations, Parquet)

The manifest is written last: a folder without one is not a backup.

TRICKY: the database is dumped first and the files copied after it. Every store only grows
(logs are appended, artifacts, bundles, datasets and observation files are written once under
new names), so the files copied later hold everything the dump's rows point at; rows written
after the dump find extra files, which do no harm. On PostgreSQL the row counts and migration
state are read in the very snapshot pg_dump dumps (``pg_export_snapshot``).
"""

import hashlib
import io
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import django
from django.conf import settings
from django.db import connections
from django.utils import timezone

from .digest import file_sha256

FORMAT = 1
MANIFEST = "manifest.json"
STORES = {
    "logs": "JOB_LOG_DIR",
    "artifacts": "ARTIFACT_DIR",
    "datasets": "DATASET_DIR",
    "observations": "OBSERVATION_DIR",
}


class BackupError(Exception):
    """A backup or restore refused or failed; the message says why."""


@dataclass
class Progress:
    """Where the commands print what they do (``None``: nowhere)."""

    write: object = None

    def __call__(self, message: str) -> None:
        if self.write is not None:
            self.write(message)


class _HashingReader(io.RawIOBase):
    """A file read through tarfile, hashed on the way: the digest is of the bytes archived."""

    def __init__(self, fh):
        self.fh = fh
        self.sha = hashlib.sha256()

    def read(self, n=-1):
        data = self.fh.read(n)
        self.sha.update(data)
        return data


def key_fingerprints() -> list[str]:
    """Short digests of the encryption keys in use (the first encrypts), never the keys."""
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    if not keys:  # the development fallback of core.fields: a key derived from SECRET_KEY
        keys = [settings.SECRET_KEY]
    return [hashlib.sha256(k.encode()).hexdigest()[:16] for k in keys]


def _store_dirs() -> dict[str, Path]:
    return {name: Path(getattr(settings, setting)) for name, setting in STORES.items()}


def _is_empty_dir(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _table_counts(cursor, tables: list[str], quote) -> dict[str, int]:
    counts = {}
    for table in sorted(tables):
        cursor.execute(f"SELECT COUNT(*) FROM {quote(table)}")  # noqa: S608 - introspected names
        counts[table] = cursor.fetchone()[0]
    return counts


def _migrations(cursor) -> list[list[str]]:
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
    return [list(row) for row in cursor.fetchall()]


def _pg_env_and_args(conn) -> tuple[dict, list[str]]:
    params = conn.settings_dict
    env = dict(os.environ)
    if params.get("PASSWORD"):
        env["PGPASSWORD"] = str(params["PASSWORD"])
    sslmode = (params.get("OPTIONS") or {}).get("sslmode")
    if sslmode:
        env["PGSSLMODE"] = sslmode
    args = []
    for flag, key in (("-h", "HOST"), ("-p", "PORT"), ("-U", "USER")):
        if params.get(key):
            args += [flag, str(params[key])]
    return env, args


def _run(command: list[str], env: dict) -> None:
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    except FileNotFoundError as exc:
        raise BackupError(f"{command[0]} is not installed (PostgreSQL client tools)") from exc
    if done.returncode:
        raise BackupError(f"{command[0]} failed: {done.stderr.strip() or done.returncode}")


def _dump_postgresql(conn, path: Path) -> dict:
    env, args = _pg_env_and_args(conn)
    conn.ensure_connection()
    raw = conn.connection
    # A transaction of our own on a connection Django does not use for anything else meanwhile:
    # the snapshot it exports is the one pg_dump dumps and the one the counts are read in.
    previous = raw.autocommit
    raw.autocommit = False
    try:
        with raw.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SELECT pg_export_snapshot(), current_setting('server_version')")
            snapshot, server = cursor.fetchone()
            _run(
                [
                    "pg_dump",
                    *args,
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    f"--snapshot={snapshot}",
                    f"--file={path}",
                    conn.settings_dict["NAME"],
                ],
                env,
            )
            tables = conn.introspection.table_names(cursor)
            counts = _table_counts(cursor, tables, conn.ops.quote_name)
            migrations = _migrations(cursor)
        raw.rollback()
    finally:
        raw.autocommit = previous
    done = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True, check=False)  # noqa: S607
    return {
        "vendor": "postgresql",
        "file": path.name,
        "server_version": server,
        "pg_dump": done.stdout.strip(),
        "row_counts": counts,
        "migrations": migrations,
    }


def _dump_sqlite(conn, path: Path) -> dict:
    conn.ensure_connection()
    target = sqlite3.connect(path)
    try:
        conn.connection.backup(target)  # the sqlite3 online backup API: a consistent copy
        cursor = target.cursor()
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = [r[0] for r in cursor.fetchall() if not r[0].startswith("sqlite_")]
        counts = _table_counts(cursor, tables, conn.ops.quote_name)
        migrations = _migrations(cursor)
    finally:
        target.close()
    return {
        "vendor": "sqlite",
        "file": path.name,
        "server_version": sqlite3.sqlite_version,
        "row_counts": counts,
        "migrations": migrations,
    }


def _archive_store(root: Path, archive: Path) -> dict:
    """Every regular file under ``root`` into ``archive`` (a tar), each hashed as archived.
    Symbolic links are left out (a store holds none; one would point outside it)."""
    files, skipped = [], []
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    path = Path(dirpath) / name
                    rel = path.relative_to(root).as_posix()
                    if path.is_symlink() or not path.is_file():
                        skipped.append(rel)
                        continue
                    info = tar.gettarinfo(path, arcname=rel)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    if info.islnk():  # a hard link to a file archived before (step cache)
                        tar.addfile(info)
                        linked = next(f for f in files if f["path"] == info.linkname)
                        files.append({**linked, "path": rel})
                        continue
                    with open(path, "rb") as fh:
                        reader = _HashingReader(fh)
                        tar.addfile(info, reader)
                    files.append({"path": rel, "size": info.size, "sha256": reader.sha.hexdigest()})
    return {"files": files, "skipped": skipped}


def backup_create(*, target: Path, using: str = "default", force: bool = False, log=None) -> dict:
    """Write a backup of the database ``using`` and the file stores into ``target``; return
    the manifest. ``target`` must be empty or absent unless ``force``."""
    say = Progress(log)
    target = Path(target)
    if not _is_empty_dir(target):
        if not force:
            raise BackupError(f"{target} is not empty (use --force to overwrite it)")
        shutil.rmtree(target)
    target.mkdir(parents=True, exist_ok=True)
    conn = connections[using]
    started = timezone.now()
    if conn.vendor == "postgresql":
        database = _dump_postgresql(conn, target / "database.dump")
    elif conn.vendor == "sqlite":
        database = _dump_sqlite(conn, target / "database.sqlite3")
    else:
        raise BackupError(f"cannot back up a {conn.vendor} database")
    database["sha256"] = file_sha256(target / database["file"])
    database["size"] = (target / database["file"]).stat().st_size
    rows = sum(database["row_counts"].values())
    say(f"database: {database['file']} ({database['size']} bytes, {rows} rows)")
    stores = {}
    for name, root in _store_dirs().items():
        archive = target / f"{name}.tar"
        stored = _archive_store(root, archive)
        stores[name] = {
            "setting": STORES[name],
            "source": str(root),
            "archive": archive.name,
            "sha256": file_sha256(archive),
            **stored,
        }
        say(f"{name}: {len(stored['files'])} files from {root}")
        for rel in stored["skipped"]:
            say(f"  left out (not a regular file): {rel}")
    manifest = {
        "format": FORMAT,
        "created": started.isoformat(),
        "finished": timezone.now().isoformat(),
        "versions": {
            "controlplane": _controlplane_version(),
            "django": django.get_version(),
            "python": platform.python_version(),
        },
        "encryption_keys": key_fingerprints(),
        "database": database,
        "stores": stores,
    }
    tmp = target / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(target / MANIFEST)
    return manifest


def _controlplane_version() -> str:
    pyproject = Path(settings.BASE_DIR) / "pyproject.toml"
    try:
        for line in pyproject.read_text(encoding="utf-8").splitlines():
            if line.startswith("version"):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def read_manifest(source: Path) -> dict:
    path = Path(source) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BackupError(f"{source} holds no {MANIFEST}: not a complete backup") from exc
    except ValueError as exc:
        raise BackupError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')!r}; this version reads {FORMAT}")
    return manifest


def backup_verify(*, source: Path) -> dict:
    """The manifest of the backup in ``source`` once the database file and every archive
    match their digests; raises BackupError naming the first that does not."""
    source = Path(source)
    manifest = read_manifest(source)
    parts = [(manifest["database"]["file"], manifest["database"]["sha256"])]
    parts += [(s["archive"], s["sha256"]) for s in manifest["stores"].values()]
    for name, digest in parts:
        path = source / name
        if not path.is_file():
            raise BackupError(f"{path} is missing")
        if file_sha256(path) != digest:
            raise BackupError(f"{path} does not match its digest in the manifest (corrupted)")
    return manifest


def _migration_problems(manifest: dict) -> tuple[list[str], list[str]]:
    """(migrations the backup has that this code does not know, migrations this code has that
    the backup lacks)."""
    from django.db.migrations.loader import MigrationLoader

    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    applied = {tuple(m) for m in manifest["database"]["migrations"]}
    unknown = sorted(f"{a}.{n}" for a, n in applied - known)
    missing = sorted(f"{a}.{n}" for a, n in known - applied)
    return unknown, missing


def _check_targets(conn, dirs: dict[str, Path]) -> list[str]:
    problems = []
    with conn.cursor() as cursor:
        tables = conn.introspection.table_names(cursor)
    if tables:
        problems.append(f"the database {conn.settings_dict['NAME']} has {len(tables)} tables")
    for name, path in dirs.items():
        if not _is_empty_dir(path):
            problems.append(f"the {name} folder {path} is not empty")
    return problems


def _wipe(conn, dirs: dict[str, Path]) -> None:
    if conn.vendor == "postgresql":
        with conn.cursor() as cursor:
            cursor.execute("DROP SCHEMA IF EXISTS public CASCADE")
            cursor.execute("CREATE SCHEMA public")
    # SQLite needs nothing: the backup API replaces every page of the database file.
    for path in dirs.values():
        if path.exists():
            shutil.rmtree(path)


def _restore_database(conn, source: Path, database: dict) -> None:
    path = source / database["file"]
    if conn.vendor == "postgresql":
        env, args = _pg_env_and_args(conn)
        conn.close()  # pg_restore works on its own connection
        _run(
            [
                "pg_restore",
                *args,
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                f"--dbname={conn.settings_dict['NAME']}",
                str(path),
            ],
            env,
        )
    else:
        conn.ensure_connection()
        backup = sqlite3.connect(path)
        try:
            backup.backup(conn.connection)
        finally:
            backup.close()


def _extract_store(archive: Path, root: Path, files: list[dict]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        # The "data" filter refuses absolute paths, "..", links out of the folder, devices.
        tar.extractall(root, filter="data")
    for entry in files:
        path = root / entry["path"]
        if not path.is_file() or file_sha256(path) != entry["sha256"]:
            raise BackupError(f"{path} does not match its digest after the restore")


def backup_restore(*, source: Path, using: str = "default", force: bool = False, log=None) -> dict:
    """Restore the backup in ``source`` into the database ``using`` and the store folders of
    the settings. The targets must be empty unless ``force`` (which wipes them first). Returns
    what was restored and checked."""
    say = Progress(log)
    source = Path(source)
    manifest = backup_verify(source=source)
    say(f"backup of {manifest['created']}: database and {len(manifest['stores'])} archives intact")
    unknown, missing = _migration_problems(manifest)
    if unknown:
        raise BackupError(
            "the backup was made by a newer version (migrations this code does not have: "
            + ", ".join(unknown[:5])
            + "); install that version to restore it"
        )
    keys = manifest.get("encryption_keys") or []
    if keys and keys[0] not in key_fingerprints() and not force:
        raise BackupError(
            f"the backup's secrets are encrypted with key {keys[0]}, which is not among "
            "CONTROLPLANE_ENCRYPTION_KEYS here; set that key (or use --force to restore "
            "unreadable secrets)"
        )
    conn = connections[using]
    vendor = manifest["database"]["vendor"]
    if vendor != conn.vendor:
        raise BackupError(f"the backup is of a {vendor} database, this one is {conn.vendor}")
    dirs = _store_dirs()
    problems = _check_targets(conn, dirs)
    if problems:
        if not force:
            raise BackupError("refusing to restore over data: " + "; ".join(problems))
        say("--force: wiping " + "; ".join(problems))
        _wipe(conn, dirs)
    _restore_database(conn, source, manifest["database"])
    say(f"database restored into {conn.settings_dict['NAME']}")
    files = 0
    for name, store in manifest["stores"].items():
        _extract_store(source / store["archive"], dirs[name], store["files"])
        files += len(store["files"])
        say(f"{name}: {len(store['files'])} files restored into {dirs[name]}, digests verified")
    with conn.cursor() as cursor:
        tables = conn.introspection.table_names(cursor)
        counts = _table_counts(cursor, tables, conn.ops.quote_name)
    expected = manifest["database"]["row_counts"]
    wrong = {t: (n, counts.get(t)) for t, n in expected.items() if counts.get(t) != n}
    if wrong:
        raise BackupError(f"row counts differ after the restore (table: backup, restored): {wrong}")
    say(f"row counts of {len(expected)} tables match the manifest ({sum(counts.values())} rows)")
    if missing:
        say(f"this code has {len(missing)} migrations the backup lacks: run manage.py migrate")
    return {"manifest": manifest, "files": files, "row_counts": counts, "migrate": missing}
