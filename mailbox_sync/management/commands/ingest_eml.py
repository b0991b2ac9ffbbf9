from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from mailbox_sync import services
from mailbox_sync.models import Mailbox


class Command(BaseCommand):
    # Run by hand and by schedulers, often: the system checks belong to deploys.
    requires_system_checks = []
    help = "Feed letters from .eml files through the same pipeline as the IMAP sync."

    def add_arguments(self, parser):
        parser.add_argument("--mailbox", type=int, required=True)
        parser.add_argument("files", nargs="+")

    def handle(self, *args, mailbox, files, **options):
        box = Mailbox.objects.filter(pk=mailbox).first()
        if box is None:
            raise CommandError(f"No mailbox with id {mailbox}")
        stored = 0
        for name in files:
            path = Path(name)
            if not path.is_file():
                raise CommandError(f"{name}: no such file")
            letter = services.ingest_raw(mailbox=box, raw=path.read_bytes())
            if letter is None:
                self.stdout.write(f"{name}: already stored")
                continue
            stored += 1
            lead = (
                f"lead {letter.lead_id}"
                if letter.lead_id
                else f"not a lead ({letter.not_lead_reason or letter.attribution_error or 'pending'})"
            )
            flag = " [malformed]" if letter.malformed else ""
            self.stdout.write(f"{name}: letter {letter.pk}{flag}, {lead}")
        self.stdout.write(self.style.SUCCESS(f"{stored} new letters"))
