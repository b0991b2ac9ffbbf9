from django.core.management.base import BaseCommand
from tqdm import tqdm

from mailbox_sync import services
from mailbox_sync.models import Mailbox


class _Progress:
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
    help = "Sync mailboxes now (all active ones, or one with --mailbox), with a progress bar."

    def add_arguments(self, parser):
        parser.add_argument("--mailbox", type=int, help="ID of one mailbox (synced even if inactive)")

    def handle(self, *args, mailbox=None, **options):
        mailboxes = Mailbox.objects.filter(pk=mailbox) if mailbox else Mailbox.objects.filter(active=True)
        if mailbox and not mailboxes.exists():
            self.stderr.write(self.style.ERROR(f"No mailbox with id {mailbox}"))
            raise SystemExit(2)
        failed = 0
        for box in mailboxes.order_by("id"):
            progress = _Progress(box.name)
            result = services.sync_mailbox(box.pk, progress=progress)
            progress.close()
            if result.error:
                failed += 1
                self.stderr.write(self.style.ERROR(f"{box.name}: {result.error}"))
            else:
                self.stdout.write(self.style.SUCCESS(f"{box.name}: {result.stored} new letters"))
        if failed:
            raise SystemExit(1)
