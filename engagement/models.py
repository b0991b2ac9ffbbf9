"""What engagement keeps about the letters a project sends: the message, its
recipients (each with their own pixel and signed links), its links, the events
recorded for them (opens, clicks, replies, each with a verdict: a person or a
kind of machine), the project's engagement settings and opt-out list, and the
network lists the verdicts are decided with."""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from attribution.models import Lead
from mailbox_sync.models import Letter
from projects.models import Project


class Origin(models.TextChoices):
    API = "api", _("Messages API")
    RELAY = "relay", _("SMTP relay")


class OpenState(models.TextChoices):
    """How far a recipient is known to have opened the message; only ever
    moves up (none → machine → inferred → person)."""

    NONE = "none", _("Not opened")
    MACHINE = "machine", _("Opened by a machine only")
    INFERRED = "inferred", _("Opened (inferred from a click or reply)")
    PERSON = "person", _("Opened by a person")


class EventKind(models.TextChoices):
    OPEN = "open", _("Open")
    CLICK = "click", _("Click")
    HONEYPOT = "honeypot", _("Hidden link followed")
    REPLY = "reply", _("Reply")


class Verdict(models.TextChoices):
    HUMAN = "human", _("Person")
    GMAIL_PROXY = "gmail_proxy", _("Person through Gmail's image proxy")
    GMAIL_PREFETCH = "gmail_prefetch", _("Gmail prefetch")
    YAHOO_PROXY = "yahoo_proxy", _("Person through Yahoo's image proxy")
    APPLE_MPP = "apple_mpp", _("Apple Mail Privacy Protection")
    SCANNER = "scanner", _("Security scanner")
    SELF = "self", _("The sender's own open")
    UNKNOWN = "unknown", _("Unknown")


# A person read the letter (through a mail provider's image proxy or not).
PERSON_VERDICTS = (Verdict.HUMAN, Verdict.GMAIL_PROXY, Verdict.YAHOO_PROXY)


class Message(models.Model):
    """A letter the project sends with tracking: made by the messages API or
    by the SMTP relay. Each recipient gets their own copy."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="messages", verbose_name=_("project"))
    origin = models.CharField(_("made by"), max_length=8, choices=Origin.choices)
    subject = models.CharField(_("subject"), max_length=500, blank=True)
    campaign = models.CharField(_("campaign"), max_length=200, blank=True)
    lead = models.ForeignKey(
        Lead, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages", verbose_name=_("lead")
    )
    message_id = models.CharField(_("Message-ID"), max_length=998, blank=True)
    mail_from = models.CharField(_("sender"), max_length=320, blank=True)
    sender_network = models.GenericIPAddressField(
        _("sender's network"),
        null=True,
        blank=True,
        help_text=_("The relay client's address, truncated: its opens in the first minutes are the sender's own."),
    )
    has_html = models.BooleanField(_("has HTML"), default=True)
    has_text = models.BooleanField(_("has plain text"), default=False)
    size = models.PositiveIntegerField(_("size (bytes)"), default=0)
    created_at = models.DateTimeField(_("sent"), default=timezone.now)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at", "-id"], name="message_project_created"),
            models.Index(fields=["project", "campaign"], name="message_project_campaign"),
            models.Index(fields=["project", "message_id"], name="message_project_message_id"),
        ]

    def __str__(self):
        return self.subject or f"#{self.pk}"


class MessageRecipient(models.Model):
    """One recipient of a message, with their own pixel and signed links; the
    state sums up their events (a later person's event upgrades it)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="recipients", verbose_name=_("message"))
    email = models.CharField(_("email"), max_length=320)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    open_state = models.CharField(_("opened"), max_length=8, choices=OpenState.choices, default=OpenState.NONE)
    first_opened_at = models.DateTimeField(_("first opened by a person"), null=True, blank=True)
    last_opened_at = models.DateTimeField(_("last opened by a person"), null=True, blank=True)
    replied_at = models.DateTimeField(_("replied"), null=True, blank=True)

    class Meta:
        verbose_name = _("recipient")
        verbose_name_plural = _("recipients")
        ordering = ["message", "id"]
        constraints = [models.UniqueConstraint(fields=["message", "email"], name="messagerecipient_unique_email")]
        indexes = [models.Index(fields=["email"], name="messagerecipient_email")]

    def __str__(self):
        return self.email


class Link(models.Model):
    """One distinct http(s) link of a message (the same URL twice is one link),
    in the order it first appears."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="links", verbose_name=_("message"))
    position = models.PositiveIntegerField(_("position"))
    url = models.TextField(_("URL"))

    class Meta:
        verbose_name = _("link")
        verbose_name_plural = _("links")
        ordering = ["message", "position"]
        constraints = [models.UniqueConstraint(fields=["message", "position"], name="link_unique_position")]

    def __str__(self):
        return self.url


class Event(models.Model):
    """An open, a click, a followed hidden link or a reply of one recipient,
    with its verdict. Machine events are labelled, never deleted; an inferred
    open is made by a person's click or reply when no open was seen."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events", verbose_name=_("message"))
    recipient = models.ForeignKey(
        MessageRecipient, on_delete=models.CASCADE, related_name="events", verbose_name=_("recipient")
    )
    kind = models.CharField(_("event"), max_length=8, choices=EventKind.choices)
    verdict = models.CharField(_("verdict"), max_length=16, choices=Verdict.choices)
    probable = models.BooleanField(
        _("probable"), default=False, help_text=_("The verdict is likely, not certain (a network listed as probable).")
    )
    reason = models.CharField(_("why"), max_length=100, blank=True)
    inferred = models.BooleanField(_("inferred"), default=False)
    link = models.ForeignKey(
        Link, null=True, blank=True, on_delete=models.CASCADE, related_name="events", verbose_name=_("link")
    )
    letter = models.ForeignKey(
        Letter, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("reply letter")
    )
    at = models.DateTimeField(_("time"))
    ip_truncated = models.GenericIPAddressField(_("IP (truncated)"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=500, blank=True)
    method = models.CharField(_("HTTP method"), max_length=8, blank=True)
    device_type = models.CharField(_("device"), max_length=16, blank=True)
    stream_id = models.CharField(_("stream id"), max_length=40, null=True, blank=True, unique=True, editable=False)
    recorded_at = models.DateTimeField(_("recorded"), default=timezone.now)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "letter"], condition=Q(letter__isnull=False), name="event_reply_once"
            ),
        ]
        indexes = [
            models.Index(fields=["recipient", "at"], name="event_recipient_at"),
            models.Index(fields=["message", "kind", "at"], name="event_message_kind_at"),
            models.Index(fields=["at"], name="event_at"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} ({self.verdict})"

    @property
    def by_person(self) -> bool:
        return self.verdict in PERSON_VERDICTS


class EngagementSettings(models.Model):
    """A project's engagement settings. Tracking is off until switched on."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="engagement_settings", verbose_name=_("project")
    )
    tracking_enabled = models.BooleanField(
        _("track opens and clicks"),
        default=False,
        help_text=_("Off: letters go out untouched, with no pixel and no tracked links."),
    )
    retention_days = models.PositiveIntegerField(
        _("keep events (days)"), default=365, help_text=_("Older opens, clicks and replies are deleted.")
    )
    webhook_machine_events = models.BooleanField(
        _("webhooks include machine events"),
        default=False,
        help_text=_("Off: message.opened and message.clicked are sent for people's events only."),
    )

    class Meta:
        verbose_name = _("engagement settings")
        verbose_name_plural = _("engagement settings")

    def __str__(self):
        return str(self.project)


class OptOut(models.Model):
    """A recipient of the project who gets letters without a pixel or tracked links."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="engagement_opt_outs", verbose_name=_("project")
    )
    email = models.CharField(_("email"), max_length=320)
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("opted-out recipient")
        verbose_name_plural = _("opted-out recipients")
        ordering = ["project", "email"]
        constraints = [models.UniqueConstraint(fields=["project", "email"], name="optout_unique_email")]

    def __str__(self):
        return self.email

    def clean(self):
        self.email = self.email.strip().lower()


class NetworkKind(models.TextChoices):
    APPLE_MPP = "apple_mpp", _("Apple Mail Privacy Protection / iCloud Private Relay")
    SCANNER = "scanner", _("Security scanners (always a machine)")
    SCANNER_PROBABLE = "scanner_probable", _("Security scanners (probably a machine)")


class NetworkList(models.Model):
    """A network list loaded by `load_network_list`; it replaces the list
    shipped in engagement/networks/ for its kind."""

    kind = models.CharField(_("list"), max_length=16, choices=NetworkKind.choices, unique=True)
    source = models.CharField(_("source"), max_length=500)
    published_on = models.DateField(_("published"), null=True, blank=True)
    loaded_at = models.DateTimeField(_("loaded"), default=timezone.now)
    networks = models.TextField(_("networks"), help_text=_("One network (CIDR) a line."))

    class Meta:
        verbose_name = _("network list")
        verbose_name_plural = _("network lists")
        ordering = ["kind"]

    def __str__(self):
        return self.get_kind_display()
