import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from privacy import people, services


class Command(BaseCommand):
    help = (
        "Export everything kept about one email address (letters it sent or is named in, leads, the sessions "
        "that led to them, tracked messages to it with their opens and clicks, relay copies, webhook deliveries) "
        "as JSON: a list with one document per project that holds anything."
    )

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--project", type=int, help="Only this project (its document even if empty).")
        parser.add_argument("--output", help="Write to this file instead of stdout.")

    def handle(self, *args, email, project=None, output=None, **options):
        email = people.address(email)
        found = people.projects(project)
        if project is not None:
            documents = [services.export_person(found[0], email)]
        else:
            documents = services.export_people((each, email) for each in found)
        text = json.dumps(documents, ensure_ascii=False, indent=2, default=str)
        if output:
            try:
                Path(output).write_text(text + "\n", encoding="utf-8")
            except OSError as error:
                raise CommandError(f"Cannot write {output}: {error.strerror}.") from error
            self.stderr.write(f"{len(documents)} project document(s) written to {output}.")
        else:
            self.stdout.write(text)
