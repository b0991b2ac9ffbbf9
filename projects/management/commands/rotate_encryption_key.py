from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from lib import crypto

# Every secret at rest is kept in a text field named *_encrypted (lib.crypto).
SUFFIX = "_encrypted"


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key of ENCRYPTION_KEY, so that the older keys "
        "can then be removed from it."
    )

    def handle(self, *args, **options):
        rotated = failed = 0
        for model in apps.get_models():
            fields = [field.attname for field in model._meta.concrete_fields if field.name.endswith(SUFFIX)]
            if not fields:
                continue
            for pk, *values in model.objects.values_list("pk", *fields).iterator():
                changed = {}
                for field, value in zip(fields, values, strict=True):
                    if not value:
                        continue
                    try:
                        changed[field] = crypto.rotate(value)
                    except ValueError:
                        failed += 1
                        self.stderr.write(f"{model._meta.label} {pk}: {field} cannot be decrypted with any key")
                if changed:
                    model.objects.filter(pk=pk).update(**changed)
                    rotated += len(changed)
        self.stdout.write(f"{rotated} secrets re-encrypted with the first key.")
        if failed:
            raise CommandError(f"{failed} secrets could not be decrypted: keep the key they were encrypted with.")
