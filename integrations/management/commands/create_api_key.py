"""Make an API key for a project and print it once (it is stored only as a hash)."""

from django.core.management.base import BaseCommand, CommandError

from integrations.keys import api_key_create
from projects.models import Project


class Command(BaseCommand):
    help = "Create a project's API key and print it (once: only its hash is kept)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="The project's id or exact name")
        parser.add_argument("--name", default="Created from the command line", help="Who uses the key")
        parser.add_argument("--read-only", action="store_true", help="The key may read but not change leads")

    def handle(self, *args, project, name, read_only, **options):
        found = Project.objects.filter(pk=int(project)) if project.isdigit() else Project.objects.filter(name=project)
        if found.count() != 1:
            names = ", ".join(f"{p.pk}: {p.name}" for p in Project.objects.order_by("pk")[:20]) or "none yet"
            raise CommandError(f"No single project {project!r}. Projects: {names}.")
        row, key = api_key_create(project=found.get(), name=name, read_only=read_only)
        self.stderr.write(
            f"API key {row.prefix}… for project {row.project.pk} ({row.project.name}). "
            "Copy it now: it cannot be shown again."
        )
        self.stdout.write(key)
