"""``manage.py backup <dir>``: the database and the file stores into a folder (docs/backup.md)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.core.backup import BackupError, backup_create


class Command(BaseCommand):
    help = "Back up the database and the log, artifact, dataset and observation stores."

    def add_arguments(self, parser):
        parser.add_argument("target", type=Path, help="an empty or new folder")
        parser.add_argument("--database", default="default", help="the database alias")
        parser.add_argument("--force", action="store_true", help="overwrite a non-empty folder")

    def handle(self, *args, target, database, force, **options):
        try:
            manifest = backup_create(
                target=target, using=database, force=force, log=self.stdout.write
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        files = sum(len(s["files"]) for s in manifest["stores"].values())
        self.stdout.write(self.style.SUCCESS(f"Backup written to {target} ({files} files)."))
