from datetime import date

from django.core.management.base import BaseCommand, CommandError

from costs import rollups
from projects.models import Project


class Command(BaseCommand):
    help = "Count the end-to-end report's days again from the leads and sessions (after a bulk load or a migration)."

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, action="append", help="Only this project (repeatable).")
        parser.add_argument("--from", dest="date_from", type=date.fromisoformat, help="First day, YYYY-MM-DD.")
        parser.add_argument("--to", dest="date_to", type=date.fromisoformat, help="Last day, YYYY-MM-DD.")

    def handle(self, *args, project=None, date_from=None, date_to=None, **options):
        if date_from and date_to and date_from > date_to:
            raise CommandError("--from is after --to.")
        projects = Project.objects.order_by("pk")
        if project:
            projects = projects.filter(pk__in=project)
            missing = set(project) - set(projects.values_list("pk", flat=True))
            if missing:
                raise CommandError(f"No project with id {', '.join(map(str, sorted(missing)))}.")
        for one in projects:
            written = rollups.rebuild(one, date_from, date_to)
            self.stdout.write(f"{one.pk} {one.name}: {written} report days")
