"""What the CRM and analytics integrations keep: API keys, webhooks and their
delivery log, per-member notification settings, per-site analytics settings,
and one row per message sent out (webhook delivery, notification, conversion)
so that each goes out once, is retried, and shows what happened."""

import re
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from attribution import events
from attribution.models import Lead
from engagement import announce
from projects.models import Membership, Project
from tracker.models import Site


class WebhookEvent(models.TextChoices):
    LEAD_CREATED = events.LEAD_CREATED, "lead.created: a new lead"
    LEAD_UPDATED = (
        events.LEAD_UPDATED,
        "lead.updated: a letter joined it, or its status, tags, comment or amount changed",
    )
    MESSAGE_OPENED = announce.MESSAGE_OPENED, "message.opened: a tracked letter was opened (or an open inferred)"
    MESSAGE_CLICKED = announce.MESSAGE_CLICKED, "message.clicked: a link of a tracked letter was followed"
    MESSAGE_REPLIED = announce.MESSAGE_REPLIED, "message.replied: a recipient answered a tracked letter"
    ALERT_STARTED = "alert.started", _("alert.started: tracking stopped working somewhere (a health condition began)")
    ALERT_ENDED = "alert.ended", _("alert.ended: a health condition is over")


class ApiKey(models.Model):
    """A project's key for the REST API. Only a hash is kept: the key itself
    is shown once, when it is made."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("project"))
    name = models.CharField(_("name"), max_length=100, help_text=_("Who uses it, e.g. “amoCRM sync”."))
    prefix = models.CharField(
        _("prefix"), max_length=16, unique=True, editable=False, help_text=_("The key's first characters")
    )
    key_hash = models.CharField(_("key hash"), max_length=64, unique=True, editable=False)
    read_only = models.BooleanField(_("read only"), default=False, help_text=_("May read, but not change leads."))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
        verbose_name=_("created by"),
    )
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name_plural = _("API keys")
        verbose_name = _("API key")
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def validate_events(value):
    if not isinstance(value, list) or not value or any(v not in WebhookEvent.values for v in value):
        raise ValidationError(f"Choose one or more of: {', '.join(WebhookEvent.values)}.")


class Webhook(models.Model):
    """Where a project's lead events are POSTed, signed with the webhook's secret."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks", verbose_name=_("project"))
    url = models.URLField(
        _("URL"), max_length=2000, help_text=_("http(s) address on the internet that receives the POST.")
    )
    events = models.JSONField(_("events"), default=list, validators=[validate_events])
    secret_encrypted = models.TextField(_("secret encrypted"), editable=False)
    description = models.CharField(_("description"), max_length=200, blank=True)
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook")
        verbose_name_plural = _("webhooks")
        ordering = ["project", "url"]

    def __str__(self):
        return self.url


class OutboundStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed (gave up)")
    SKIPPED = "skipped", _("Skipped")


class Outbound(models.Model):
    """One message to send to the outside world, tried until it succeeds or
    its retry window closes. A sender claims it with a conditional update, so
    any number of workers may pick the same row and only one sends it."""

    status = models.CharField(_("status"), max_length=8, choices=OutboundStatus.choices, default=OutboundStatus.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    give_up_at = models.DateTimeField(_("give up at"), help_text=_("No attempt is made after this"))
    claimed_until = models.DateTimeField(_("claimed until"), null=True, blank=True, editable=False)
    last_attempt_at = models.DateTimeField(_("last attempt at"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        verbose_name = _("outbound")
        verbose_name_plural = _("outbounds")
        abstract = True


class WebhookDelivery(Outbound):
    """One event for one webhook. Its id (`event_id`) stays the same through
    retries and redeliveries, so a receiver can drop duplicates by it."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("webhook"))
    event_id = models.UUIDField(_("event id"), default=uuid.uuid4, unique=True, editable=False)
    event = models.CharField(_("event"), max_length=32, choices=WebhookEvent.choices)
    lead = models.ForeignKey(
        Lead, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("lead")
    )
    payload = models.JSONField(_("payload"))
    last_status_code = models.PositiveSmallIntegerField(_("last status code"), null=True, blank=True)
    # A tracked letter's click or inferred open is sent once its verdict has
    # settled; the event is read again then (a later drain may have found it a
    # machine's).
    engagement_event = models.ForeignKey(
        "engagement.Event",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("engagement event"),
    )

    class Meta:
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhookdelivery_due"),
        ]

    def __str__(self):
        return f"{self.event} → {self.webhook}"


class WebhookAttempt(models.Model):
    """One POST of a delivery: the log a manager reads when a CRM says it got nothing."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log", verbose_name=_("delivery")
    )
    number = models.PositiveIntegerField(_("number"))
    at = models.DateTimeField(_("at"))
    status_code = models.PositiveSmallIntegerField(_("status code"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=500, blank=True)
    response_excerpt = models.CharField(_("response excerpt"), max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration ms"), default=0)

    class Meta:
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")
        ordering = ["delivery", "number"]

    def __str__(self):
        return f"Attempt {self.number}: {self.status_code or self.error}"


TELEGRAM_CHAT_RE = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$")


def validate_telegram_chat(value: str):
    if value and not TELEGRAM_CHAT_RE.match(value):
        raise ValidationError(_("A chat id is a number (e.g. 123456789 or -1001234567890) or a channel's @name."))


class NotificationSetting(models.Model):
    """How one project member hears about new leads."""

    membership = models.OneToOneField(
        Membership, on_delete=models.CASCADE, related_name="notification_setting", verbose_name=_("membership")
    )
    email_enabled = models.BooleanField(_("email"), default=False)
    email = models.EmailField(_("email"), blank=True, help_text=_("Empty: the member's own address."))
    telegram_enabled = models.BooleanField(_("Telegram"), default=False)
    telegram_chat_id = models.CharField(
        _("Telegram chat"),
        max_length=40,
        blank=True,
        validators=[validate_telegram_chat],
        help_text=_(
            "The chat the service's bot writes to: your user id, a group id, or a channel's @name. "
            "Start a chat with the bot first (or add it to the group)."
        ),
    )

    class Meta:
        verbose_name = _("notification setting")
        verbose_name_plural = _("notification settings")
        ordering = ["membership__project", "membership__user__username"]

    def __str__(self):
        return f"Notifications for {self.membership}"

    def clean(self):
        if self.telegram_enabled and not self.telegram_chat_id:
            raise ValidationError({"telegram_chat_id": "Telegram needs a chat."})

    @property
    def email_address(self) -> str:
        return self.email or self.membership.user.email


class Notification(Outbound):
    """One new-lead message to one member over one channel."""

    class Channel(models.TextChoices):
        EMAIL = "email", _("Email")
        TELEGRAM = "telegram", _("Telegram")

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="+", verbose_name=_("lead"))
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="+", verbose_name=_("membership"))
    channel = models.CharField(_("channel"), max_length=8, choices=Channel.choices)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["lead", "membership", "channel"], name="notification_once"),
        ]
        indexes = [models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="notification_due")]

    def __str__(self):
        return f"{self.channel} to {self.membership.user} about lead {self.lead_id}"


GA4_MEASUREMENT_ID_RE = re.compile(r"^G-[A-Z0-9]{4,20}$")


def validate_ga4_measurement_id(value: str):
    if value and not GA4_MEASUREMENT_ID_RE.match(value):
        raise ValidationError(_("A GA4 measurement id looks like G-XXXXXXXXXX."))


class SiteAnalytics(models.Model):
    """Where a site's leads are reported as conversions: Google Analytics 4
    (Measurement Protocol) and Yandex Metrica (offline conversions)."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="analytics", verbose_name=_("site"))
    ga4_enabled = models.BooleanField(_("send to GA4"), default=False)
    ga4_measurement_id = models.CharField(
        _("GA4 measurement id"), max_length=24, blank=True, validators=[validate_ga4_measurement_id]
    )
    ga4_api_secret_encrypted = models.TextField(_("ga4 api secret encrypted"), blank=True, editable=False)
    ga4_event_name = models.CharField(_("GA4 event"), max_length=40, default="email_lead")
    metrica_enabled = models.BooleanField(_("upload to Yandex Metrica"), default=False)
    metrica_counter_id = models.PositiveBigIntegerField(_("Metrica counter"), null=True, blank=True)
    metrica_goal = models.CharField(
        _("Metrica goal identifier"),
        max_length=100,
        default="email_lead",
        help_text=_("The identifier of a JavaScript-event goal in the counter; conversions are uploaded to it."),
    )
    metrica_token_encrypted = models.TextField(_("metrica token encrypted"), blank=True, editable=False)

    class Meta:
        verbose_name = _("site analytics")
        verbose_name_plural = _("site analytics")

    def __str__(self):
        return f"Analytics of {self.site}"


class Conversion(Outbound):
    """A lead reported to one analytics system."""

    class Target(models.TextChoices):
        GA4 = "ga4", _("Google Analytics 4")
        METRICA = "metrica", _("Yandex Metrica")

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="+", verbose_name=_("lead"))
    target = models.CharField(_("target"), max_length=8, choices=Target.choices)
    upload_id = models.CharField(_("upload id"), max_length=64, blank=True, help_text=_("Metrica's id of the upload"))

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["lead", "target"], name="conversion_once")]
        indexes = [models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="conversion_due")]

    def __str__(self):
        return f"{self.get_target_display()} conversion of lead {self.lead_id}"


class AlertNotification(Outbound):
    """One health alert (a condition began or ended) to one manager over one channel."""

    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="+", verbose_name=_("membership"))
    channel = models.CharField(_("channel"), max_length=8, choices=Notification.Channel.choices)
    alert_key = models.CharField(
        _("alert key"), max_length=200, help_text=_("The condition and whether it began or ended")
    )
    subject = models.CharField(_("subject"), max_length=200)
    text = models.TextField(_("text"))

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["alert_key", "membership", "channel"], name="alertnotification_once"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="alertnotification_due")
        ]

    def __str__(self):
        return f"{self.channel} to {self.membership.user}: {self.subject}"
