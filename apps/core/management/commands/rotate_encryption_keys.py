"""Re-encrypt every encrypted column with the first key of CONTROLPLANE_ENCRYPTION_KEYS.

Rotation: put the new key first (keep the old ones after it), restart, run this command, then
drop the old keys.
"""

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.core.fields import EncryptedTextField


class Command(BaseCommand):
    help = "Re-encrypt all secrets with the current primary encryption key."

    def handle(self, *args, **options):
        total = 0
        for model in apps.get_models():
            names = [
                f.attname for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)
            ]
            if not names:
                continue
            with transaction.atomic():
                # Reading decrypts with whichever key matches; writing encrypts with the first.
                rows = model.objects.select_for_update().values_list("pk", *names)
                for pk, *values in rows:
                    update = {n: v for n, v in zip(names, values, strict=True) if v}
                    if update:
                        model.objects.filter(pk=pk).update(**update)
                        total += 1
        self.stdout.write(f"Re-encrypted {total} row(s).")
