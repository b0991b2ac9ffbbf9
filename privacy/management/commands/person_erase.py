import getpass

from django.core.management.base import BaseCommand

from privacy import people, services


class Command(BaseCommand):
    help = (
        "Erase what identifies one email address (as a sender or a recipient) in a project, or in every project. "
        "Without --yes it only shows what it would erase. Leads, counts and the keyed digest that keeps a "
        "returning customer known stay."
    )

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--project", type=int, help="Only this project (default: every project).")
        parser.add_argument("--yes", action="store_true", help="Erase (without it: a dry run).")

    def handle(self, *args, email, project=None, yes=False, **options):
        email = people.address(email)
        held = [
            (found, services.counts(document))
            for found in people.projects(project)
            if services.found(document := services.export_person(found, email))
        ]
        if not held:
            self.stdout.write("Nothing is kept about this address.")
            return
        for found, items in held:
            listed = ", ".join(f"{key}={value}" for key, value in items.items() if value)
            self.stdout.write(f"Project {found.pk} ({found.name}): {listed}")
        if not yes:
            self.stdout.write("Dry run: nothing erased. Run again with --yes to erase.")
            return
        by = f"command:{_os_user()}"
        for found, _items in held:
            erased = services.erase_person(found, email, by=by)
            listed = ", ".join(f"{key}={value}" for key, value in erased.items() if value)
            self.stdout.write(f"Project {found.pk}: erased {listed or 'nothing'}.")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"
