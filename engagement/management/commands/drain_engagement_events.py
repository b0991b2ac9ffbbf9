import signal
import threading

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from engagement import recording


class Command(BaseCommand):
    help = _("Store the opens and clicks the pixel and links queued in Redis, in batches, until stopped.")

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help=_("Drain what is queued now, then stop."))

    def handle(self, *args, **options):
        if not recording.enabled():
            raise CommandError(_("No REDIS_URL: without Redis every event is stored at once, nothing to drain."))
        if options["once"]:
            self.stdout.write(_("%(count)d events stored.") % {"count": recording.drain()})
            return
        stop = threading.Event()
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_args: stop.set())
        recording.drain_forever(stop=stop)
