from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

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
        # A database that cannot be written (a full disk, a read-only file) is
        # said plainly, with the file it stopped at. A letter is stored in one
        # transaction, so the failed one left nothing half-written: fed again,
        # a letter stored before is recognised, and one stored but not yet
        # attributed is attributed by the mailbox's next sync.
        self.current = ""
        try:
            self._ingest(mailbox, files)
        except DatabaseError as error:
            raise CommandError(
                f"{self.current or 'mailbox'}: not stored: the database could not be written ({error}). "
                "Free disk space or make the database writable, then run the command again."
            ) from None

    def _ingest(self, mailbox, files):
        box = Mailbox.objects.filter(pk=mailbox).first()
        if box is None:
            raise CommandError(f"No mailbox with id {mailbox}")
        stored = 0
        for name in files:
            self.current, path = name, Path(name)
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
