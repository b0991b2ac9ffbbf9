"""What the SMTP relay keeps: each project's upstream SMTP server, the relay
credentials mail clients log in with, and the queue of letters on their way
to the upstream (one row per copy: a tracked recipient's own copy, or the
untouched copy for the others)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from integrations.models import Outbound
from projects.models import Project


class Upstream(models.Model):
    """The project's own SMTP server that sends the letters on (and signs them with DKIM)."""

    class Security(models.TextChoices):
        STARTTLS = "starttls", _("STARTTLS (usually port 587)")
        TLS = "tls", _("TLS from the start (usually port 465)")
        NONE = "none", _("None (only for a server on a trusted network)")

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="relay_upstream", verbose_name=_("project")
    )
    host = models.CharField(_("host"), max_length=253, help_text=_("The SMTP server's name, e.g. smtp.example.com."))
    port = models.PositiveIntegerField(_("port"), default=587)
    security = models.CharField(_("security"), max_length=8, choices=Security.choices, default=Security.STARTTLS)
    username = models.CharField(_("username"), max_length=254, blank=True, help_text=_("Empty: no login."))
    password_encrypted = models.TextField(_("password encrypted"), blank=True, editable=False)
    active = models.BooleanField(_("active"), default=True, help_text=_("Off: the relay refuses new letters."))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("upstream SMTP server")
        verbose_name_plural = _("upstream SMTP servers")
        ordering = ["project"]

    def __str__(self):
        return f"{self.host}:{self.port}"


class Credential(models.Model):
    """A login for the relay. The password is made by the service, shown once
    and kept only as a Django password hash."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="relay_credentials", verbose_name=_("project")
    )
    name = models.CharField(_("name"), max_length=100, help_text=_("Who uses it, e.g. “Anna's mail client”."))
    username = models.CharField(_("username"), max_length=64, unique=True, editable=False)
    password_hash = models.CharField(_("password hash"), max_length=256, editable=False)
    allowed_senders = models.TextField(
        _("allowed senders"),
        blank=True,
        help_text=_("One per line: an address, or @domain for any address there. Empty: any sender."),
    )
    recipients_per_hour = models.PositiveIntegerField(
        _("recipients per hour"), null=True, blank=True, help_text=_("Empty: the installation's default.")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
        verbose_name=_("created by"),
    )
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("relay credential")
        verbose_name_plural = _("relay credentials")
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.username})"


class QueuedLetter(Outbound):
    """One copy of a letter for the upstream: the recipients still to send it
    to, those it was delivered to and those the upstream refused for good."""

    class Kind(models.TextChoices):
        LETTER = "letter", _("Letter")
        BOUNCE = "bounce", _("Bounce to the sender")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", verbose_name=_("project"))
    credential = models.ForeignKey(
        Credential, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("credential")
    )
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices, default=Kind.LETTER)
    mail_from = models.CharField(_("sender"), max_length=254, blank=True, help_text=_("Empty for a bounce."))
    recipients = models.JSONField(_("waiting recipients"), default=list)
    delivered = models.JSONField(_("delivered to"), default=list)
    refused = models.JSONField(_("refused"), default=list, help_text=_("[address, SMTP code, the upstream's reply]"))
    recipient_ids = models.JSONField(_("recipient ids"), default=list, editable=False)
    raw = models.BinaryField(_("raw"))
    size = models.PositiveIntegerField(_("size, bytes"))
    message_id = models.CharField(_("Message-ID"), max_length=255, blank=True)
    client_ip = models.GenericIPAddressField(_("client address"), null=True, blank=True)
    bounce_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="bounces",
        editable=False,
        verbose_name=_("bounce of"),
    )

    class Meta:
        verbose_name = _("queued letter")
        verbose_name_plural = _("relay queue")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="relay_queue_due"),
            models.Index(fields=["created_at"], name="relay_queue_created"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.message_id or self.pk}"
