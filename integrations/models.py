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
    ALERT_STARTED = "alert.started", "alert.started: tracking stopped working somewhere (a health condition began)"
    ALERT_ENDED = "alert.ended", "alert.ended: a health condition is over"


class ApiKey(models.Model):
    """A project's key for the REST API. Only a hash is kept: the key itself
    is shown once, when it is made."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="Who uses it, e.g. “amoCRM sync”.")
    prefix = models.CharField(max_length=16, unique=True, editable=False, help_text="The key's first characters")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    read_only = models.BooleanField(default=False, help_text="May read, but not change leads.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
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

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField("URL", max_length=2000, help_text="http(s) address on the internet that receives the POST.")
    events = models.JSONField(default=list, validators=[validate_events])
    secret_encrypted = models.TextField(editable=False)
    description = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "url"]

    def __str__(self):
        return self.url


class OutboundStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (gave up)"
    SKIPPED = "skipped", "Skipped"


class Outbound(models.Model):
    """One message to send to the outside world, tried until it succeeds or
    its retry window closes. A sender claims it with a conditional update, so
    any number of workers may pick the same row and only one sends it."""

    status = models.CharField(max_length=8, choices=OutboundStatus.choices, default=OutboundStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    give_up_at = models.DateTimeField(help_text="No attempt is made after this")
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class WebhookDelivery(Outbound):
    """One event for one webhook. Its id (`event_id`) stays the same through
    retries and redeliveries, so a receiver can drop duplicates by it."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event = models.CharField(max_length=32, choices=WebhookEvent.choices)
    lead = models.ForeignKey(Lead, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    payload = models.JSONField()
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhookdelivery_due"),
        ]

    def __str__(self):
        return f"{self.event} → {self.webhook}"


class WebhookAttempt(models.Model):
    """One POST of a delivery: the log a manager reads when a CRM says it got nothing."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self):
        return f"Attempt {self.number}: {self.status_code or self.error}"


TELEGRAM_CHAT_RE = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$")


def validate_telegram_chat(value: str):
    if value and not TELEGRAM_CHAT_RE.match(value):
        raise ValidationError("A chat id is a number (e.g. 123456789 or -1001234567890) or a channel's @name.")


class NotificationSetting(models.Model):
    """How one project member hears about new leads."""

    membership = models.OneToOneField(Membership, on_delete=models.CASCADE, related_name="notification_setting")
    email_enabled = models.BooleanField("email", default=False)
    email = models.EmailField(blank=True, help_text="Empty: the member's own address.")
    telegram_enabled = models.BooleanField("Telegram", default=False)
    telegram_chat_id = models.CharField(
        "Telegram chat",
        max_length=40,
        blank=True,
        validators=[validate_telegram_chat],
        help_text="The chat the service's bot writes to: your user id, a group id, or a channel's @name. "
        "Start a chat with the bot first (or add it to the group).",
    )

    class Meta:
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
        EMAIL = "email", "Email"
        TELEGRAM = "telegram", "Telegram"

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="+")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=8, choices=Channel.choices)

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
        raise ValidationError("A GA4 measurement id looks like G-XXXXXXXXXX.")


class SiteAnalytics(models.Model):
    """Where a site's leads are reported as conversions: Google Analytics 4
    (Measurement Protocol) and Yandex Metrica (offline conversions)."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="analytics")
    ga4_enabled = models.BooleanField("send to GA4", default=False)
    ga4_measurement_id = models.CharField(
        "GA4 measurement id", max_length=24, blank=True, validators=[validate_ga4_measurement_id]
    )
    ga4_api_secret_encrypted = models.TextField(blank=True, editable=False)
    ga4_event_name = models.CharField("GA4 event", max_length=40, default="email_lead")
    metrica_enabled = models.BooleanField("upload to Yandex Metrica", default=False)
    metrica_counter_id = models.PositiveBigIntegerField("Metrica counter", null=True, blank=True)
    metrica_goal = models.CharField(
        "Metrica goal identifier",
        max_length=100,
        default="email_lead",
        help_text="The identifier of a JavaScript-event goal in the counter; conversions are uploaded to it.",
    )
    metrica_token_encrypted = models.TextField(blank=True, editable=False)

    class Meta:
        verbose_name = "site analytics"
        verbose_name_plural = "site analytics"

    def __str__(self):
        return f"Analytics of {self.site}"


class Conversion(Outbound):
    """A lead reported to one analytics system."""

    class Target(models.TextChoices):
        GA4 = "ga4", "Google Analytics 4"
        METRICA = "metrica", "Yandex Metrica"

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="+")
    target = models.CharField(max_length=8, choices=Target.choices)
    upload_id = models.CharField(max_length=64, blank=True, help_text="Metrica's id of the upload")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["lead", "target"], name="conversion_once")]
        indexes = [models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="conversion_due")]

    def __str__(self):
        return f"{self.get_target_display()} conversion of lead {self.lead_id}"


class AlertNotification(Outbound):
    """One health alert (a condition began or ended) to one manager over one channel."""

    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=8, choices=Notification.Channel.choices)
    alert_key = models.CharField(max_length=200, help_text="The condition and whether it began or ended")
    subject = models.CharField(max_length=200)
    text = models.TextField()

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
