"""What the person_export / person_erase commands share: the address checked
and the projects to look in."""

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.core.validators import validate_email

from lib.privacy import normalize_email
from projects.models import Project


def address(value: str) -> str:
    email = normalize_email(value)
    try:
        validate_email(email)
    except ValidationError as error:
        raise CommandError(f"{value!r} is not an email address.") from error
    return email


def projects(project_id: int | None) -> list[Project]:
    if project_id is None:
        return list(Project.objects.order_by("pk"))
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        raise CommandError(f"There is no project {project_id}.")
    return [project]
