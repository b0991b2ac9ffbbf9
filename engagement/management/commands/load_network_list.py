from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from engagement import networks
from engagement.models import NetworkKind


class Command(BaseCommand):
    help = _(
        "Load a new network list (one network a line, or a CSV whose first column is the network, "
        "such as Apple's egress-ip-ranges.csv); it replaces the list shipped with the service."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=NetworkKind.values)
        parser.add_argument("file")
        parser.add_argument("--source", default="", help=_("Where the list comes from (default: the file's name)."))
        parser.add_argument("--published", default="", help=_("The list's date, YYYY-MM-DD (default: today)."))

    def handle(self, *args, kind, file, source, published, **options):
        try:
            text = Path(file).read_text(encoding="utf-8", errors="replace")
            published_on = date.fromisoformat(published) if published else date.today()
            row = networks.network_list_load(kind=kind, text=text, source=source or file, published_on=published_on)
        except (OSError, ValueError) as error:
            raise CommandError(str(error)) from None
        count = len(row.networks.splitlines())
        self.stdout.write(_("%(count)d networks loaded into %(kind)s.") % {"count": count, "kind": kind})
