import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _


def validate_time_zone(value):
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            _("Unknown time zone %(zone)r; use an IANA name such as Europe/Moscow."), params={"zone": value}
        )


def default_language() -> str:
    return settings.LANGUAGE_CODE


class Project(models.Model):
    """The tenant: everything else belongs to one project."""

    name = models.CharField(_("name"), max_length=200)
    time_zone = models.CharField(_("time zone"), max_length=64, default="UTC", validators=[validate_time_zone])
    language = models.CharField(
        _("language"),
        max_length=8,
        choices=settings.LANGUAGES,
        default=default_language,
        help_text=_("The language of the project's notifications (new-lead emails, Telegram messages)."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    # A simulation's scratch project (the simulation app makes it and deletes
    # it after the run): no one's, so no list for people shows it or its rows.
    scratch = models.BooleanField(_("scratch"), default=False, editable=False)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="projects", verbose_name=_("members")
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("project")
        verbose_name_plural = _("projects")

    def __str__(self):
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        MANAGER = "manager", _("Manager (configures)")
        MARKETER = "marketer", _("Marketer (reads the journal)")

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("project")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("user")
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.MARKETER)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user")]

    def __str__(self):
        return f"{self.user} in {self.project} ({self.role})"


class Profile(models.Model):
    """A person's own settings: the language they read the journal and admin in."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile", verbose_name=_("user")
    )
    language = models.CharField(
        _("language"),
        max_length=8,
        choices=settings.LANGUAGES,
        blank=True,
        help_text=_("Empty: the browser's language."),
    )

    class Meta:
        verbose_name = _("profile")
        verbose_name_plural = _("profiles")

    def __str__(self):
        return str(self.user)


class LoginLockout(models.Model):
    """A sign-in refused for a while after too many failures (projects.logins),
    for superusers to see."""

    class Reason(models.TextChoices):
        USERNAME = "username", _("Too many failures for one username")
        ADDRESS = "address", _("Too many failures from one client address")

    where = models.CharField(_("sign-in"), max_length=16)
    username = models.CharField(
        _("username"), max_length=150, blank=True, help_text=_("Empty when the name typed is no account's.")
    )
    client_address = models.GenericIPAddressField(_("client address"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=16, choices=Reason.choices)
    at = models.DateTimeField(_("locked at"), auto_now_add=True)
    until = models.DateTimeField(_("locked until"))

    class Meta:
        verbose_name = _("sign-in lockout")
        verbose_name_plural = _("sign-in lockouts")
        ordering = ["-at"]

    def __str__(self):
        return f"{self.username or self.client_address} ({self.at:%Y-%m-%d %H:%M})"
