from .models import Membership, Project


def projects_for_user(user):
    """Projects a user may see: all for a superuser, else those they are a member of."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def managed_project_ids(user) -> set[int]:
    """Projects a user may configure."""
    if user.is_superuser:
        return set(Project.objects.values_list("id", flat=True))
    return set(Membership.objects.filter(user=user, role=Membership.Role.MANAGER).values_list("project_id", flat=True))
