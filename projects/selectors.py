from .models import Membership, Project


def people_projects():
    """Every project a person may see (a simulation's scratch project is no one's)."""
    return Project.objects.filter(scratch=False)


def projects_for_user(user):
    """Projects a user may see: all for a superuser, else those they are a member of."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return people_projects()
    return people_projects().filter(memberships__user=user)


def managed_project_ids(user) -> set[int]:
    """Projects a user may configure."""
    if user.is_superuser:
        return set(people_projects().values_list("id", flat=True))
    return set(Membership.objects.filter(user=user, role=Membership.Role.MANAGER).values_list("project_id", flat=True))
