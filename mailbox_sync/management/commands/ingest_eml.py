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
            outcome, letter = services.ingest_letter(mailbox=box, raw=path.read_bytes())
            if outcome.seen != services.Seen.STORED:
                self.stdout.write(f"{name}: same letter already stored (letter {outcome.letter_id})")
                continue
            stored += 1
            said = "stored"
            if outcome.reused_by:
                said += "; Message-ID reused by letter " + ", ".join(str(other) for other in outcome.reused_by)
            lead = (
                f"lead {letter.lead_id}"
                if letter.lead_id
                else f"not a lead ({letter.not_lead_reason or letter.attribution_error or 'pending'})"
            )
            flag = " [malformed]" if letter.malformed else ""
            self.stdout.write(f"{name}: {said} (letter {letter.pk}{flag}, {lead})")
        self.stdout.write(self.style.SUCCESS(f"{stored} new letters"))
