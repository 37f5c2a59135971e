"""``manage.py restore <dir>``: a backup into an empty database and empty store folders,
every digest and row count checked (docs/backup.md)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.core.backup import BackupError, backup_restore


class Command(BaseCommand):
    help = "Restore a backup made by `manage.py backup` into an empty database and folders."

    def add_arguments(self, parser):
        parser.add_argument("source", type=Path, help="the backup folder")
        parser.add_argument("--database", default="default", help="the database alias")
        parser.add_argument(
            "--force",
            action="store_true",
            help="wipe a non-empty database and store folders first (everything in them is lost)",
        )

    def handle(self, *args, source, database, force, **options):
        try:
            result = backup_restore(
                source=source, using=database, force=force, log=self.stdout.write
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        rows = sum(result["row_counts"].values())
        self.stdout.write(
            self.style.SUCCESS(f"Restored {rows} rows and {result['files']} files from {source}.")
        )
