from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from mailbox_sync import services
from mailbox_sync.models import Mailbox


class _Progress:
    """A tqdm bar per folder; the sync calls start() and advance()."""

    def __init__(self, name):
        self.name = name
        self.bar = None

    def start(self, folder, total):
        self.close()
        self.bar = tqdm(total=total, desc=f"{self.name} / {folder}", unit="letter")

    def advance(self, count):
        if self.bar is not None:
            self.bar.update(count)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Command(BaseCommand):
    # Run by hand and by schedulers, often: the system checks belong to deploys.
    requires_system_checks = []
    help = "Sync mailboxes now (all active ones, or one with --mailbox), with a progress bar."

    def add_arguments(self, parser):
        parser.add_argument("--mailbox", type=int, help="ID of one mailbox (synced even if inactive)")
        parser.add_argument(
            "--batch", type=int, help="Letters fetched and committed together (default: IMAP_FETCH_BATCH)"
        )

    def handle(self, *args, mailbox=None, batch=None, **options):
        if batch is not None and batch < 1:
            raise CommandError("--batch must be at least 1")
        mailboxes = Mailbox.objects.filter(pk=mailbox) if mailbox else Mailbox.objects.filter(active=True)
        if mailbox and not mailboxes.exists():
            self.stderr.write(self.style.ERROR(f"No mailbox with id {mailbox}"))
            raise SystemExit(2)
        failed = 0
        for box in mailboxes.order_by("id"):
            progress = _Progress(box.name)
            try:
                result = services.sync_mailbox(box.pk, progress=progress, batch=batch)
            finally:
                progress.close()
            if result.error:
                failed += 1
                self.stderr.write(self.style.ERROR(f"{box.name}: {result.error}"))
                continue
            notes = [f"{result.malformed} unreadable"] if result.malformed else []
            notes += [f"{result.truncated} over the size limit"] if result.truncated else []
            notes += [f"{result.copies} copies of letters stored before"] if result.copies else []
            notes += [f"{result.replies} replies"] if box.watch_sent else []
            extra = f" ({', '.join(notes)})" if notes else ""
            self.stdout.write(self.style.SUCCESS(f"{box.name}: {result.stored} new letters{extra}"))
        if failed:
            raise SystemExit(1)
