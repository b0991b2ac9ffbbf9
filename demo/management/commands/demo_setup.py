from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from demo import services


class Command(BaseCommand):
    help = "DEBUG=1 DEMO=1 only: create the demo project and print the demo admin's login."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args, base_url, **options):
        try:
            site, password = services.demo_setup()
        except PermissionDenied as error:
            raise CommandError(str(error)) from error
        url = base_url.rstrip("/")
        self.stdout.write(self.style.SUCCESS("Demo ready."))
        self.stdout.write(f"  Demo page: {url}/demo/?utm_source=newsletter&utm_medium=email&utm_campaign=autumn")
        self.stdout.write(f"  Journal:   {url}/journal/")
        self.stdout.write(f"  Admin:     {url}/admin/   login: {services.DEMO_ADMIN}   password: {password}")
        self.stdout.write(f'  Snippet:   <script async src="{url}/s/{site.site_key}.js"></script>')
