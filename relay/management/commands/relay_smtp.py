import signal
import threading

from django.core.management.base import BaseCommand

from relay import conf, server


class Command(BaseCommand):
    help = "Run the SMTP relay: mail clients and CRMs send through it, letters go on to each project's upstream."

    def add_arguments(self, parser):
        parser.add_argument("--host", help="Listen address (default: RELAY_HOST)")
        parser.add_argument("--port", type=int, help="Listen port (default: RELAY_PORT)")

    def handle(self, *args, host=None, port=None, **options):
        controller = server.make_controller(host, port)
        cert, _key = conf.tls_files()
        if not cert and not conf.allow_plain_auth_on_loopback():
            self.stderr.write(
                "No TLS certificate (RELAY_TLS_CERT, RELAY_TLS_KEY) and RELAY_ALLOW_PLAIN_AUTH_ON_LOOPBACK is off: "
                "no client can log in."
            )
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        controller.start()
        self.stdout.write(
            f"SMTP relay on {controller.hostname}:{controller.port} "
            f"(STARTTLS {'on' if cert else 'off'}, up to {conf.max_message_bytes()} bytes a letter)",
        )
        self.stdout.flush()
        stop.wait()
        controller.stop()
        self.stdout.write("SMTP relay stopped.")
