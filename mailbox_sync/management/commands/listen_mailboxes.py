import asyncio
import logging
import signal

from django.core.management.base import BaseCommand

from mailbox_sync.listener import Listener


class Command(BaseCommand):
    help = (
        "Listen to every active mailbox with IMAP IDLE and sync a mailbox as soon as a letter arrives. "
        "Start it on several hosts to share the mailboxes; the 10-minute poll stays as the safety net."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", help="This listener's name (default: host, process id and a random part)")

    def handle(self, *args, name=None, **options):
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        listener = Listener(name)

        async def main():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, listener.request_stop)
            await listener.run()

        self.stdout.write(f"Listening as {listener.name}; Ctrl-C stops.")
        asyncio.run(main())
