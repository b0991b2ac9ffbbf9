from datetime import timedelta

from django.db import models
from django.db.models import Q

from attribution.models import Lead
from projects.models import Project


class Mailbox(models.Model):
    """A real inbox read over IMAP, read-only."""

    class Security(models.TextChoices):
        SSL = "ssl", "TLS (IMAPS, usually port 993)"
        STARTTLS = "starttls", "STARTTLS (usually port 143)"
        NONE = "none", "None (local servers only)"

    class State(models.TextChoices):
        NEW = "new", "Not synced yet"
        OK = "ok", "OK"
        FAILING = "failing", "Failing"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="mailboxes")
    name = models.CharField(max_length=200)
    host = models.CharField(max_length=253)
    port = models.PositiveIntegerField(default=993)
    security = models.CharField(max_length=16, choices=Security.choices, default=Security.SSL)
    username = models.CharField(max_length=320)
    password_encrypted = models.TextField(blank=True, editable=False)
    folders = models.CharField(max_length=500, default="INBOX", help_text="Folders to watch, comma-separated.")
    active = models.BooleanField(default=True)
    repeat_period = models.DurationField(
        default=timedelta(days=1),
        help_text="A letter from the same sender to the same address within this period joins the earlier lead.",
    )
    sync_interval_minutes = models.PositiveIntegerField(default=10)
    text_limit = models.PositiveIntegerField(default=1000, help_text="Characters of letter text kept.")
    tracked_only = models.BooleanField(default=False, help_text="Letters to untracked addresses are not leads.")

    # Sync state
    state = models.CharField(max_length=16, choices=State.choices, default=State.NEW, editable=False)
    next_sync_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    failure_count = models.PositiveIntegerField(default=0, editable=False)
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "mailboxes"
        constraints = [models.UniqueConstraint(fields=["host", "username"], name="mailbox_connected_once")]
        indexes = [models.Index(fields=["active", "next_sync_at"], name="mailbox_due")]

    def __str__(self):
        return self.name

    @property
    def folder_names(self) -> list[str]:
        return [f.strip() for f in self.folders.split(",") if f.strip()] or ["INBOX"]


class FolderState(models.Model):
    """How far a folder has been read: letters above `last_uid` are new."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="folder_states")
    name = models.CharField(max_length=500)
    uidvalidity = models.BigIntegerField()
    last_uid = models.BigIntegerField(default=0)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["mailbox", "name"], name="folderstate_unique")]

    def __str__(self):
        return f"{self.mailbox} / {self.name}"


class Letter(models.Model):
    """One stored letter, exactly once per mailbox."""

    class Origin(models.TextChoices):
        IMAP = "imap", "IMAP"
        FILE = "file", "File"
        DEMO = "demo", "Demo page"

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="letters")
    origin = models.CharField(max_length=8, choices=Origin.choices, default=Origin.IMAP)
    folder = models.CharField(max_length=500, blank=True)
    uidvalidity = models.BigIntegerField(null=True, blank=True)
    uid = models.BigIntegerField(null=True, blank=True)
    # Message-ID, else "sha256:" + hash of the raw letter: never two per mailbox.
    dedupe_key = models.CharField(max_length=1000)
    message_id = models.CharField(max_length=998, blank=True)
    received_at = models.DateTimeField(help_text="Arrival in the mailbox: the attribution time")
    date_header = models.DateTimeField(
        null=True, blank=True, help_text="The sender's Date header, shown, never trusted"
    )
    sender_email = models.EmailField(max_length=320, blank=True)
    sender_name = models.CharField(max_length=200, blank=True)
    subject = models.CharField(max_length=500, blank=True)
    recipients = models.JSONField(default=dict, help_text="delivered_to, to, cc")
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.JSONField(default=list, blank=True)
    text = models.TextField(blank=True)
    attachments = models.JSONField(default=list, blank=True)
    size = models.PositiveIntegerField(default=0)
    headers = models.JSONField(default=dict, blank=True)
    raw = models.BinaryField()
    malformed = models.BooleanField(default=False)
    parse_error = models.TextField(blank=True)
    not_lead_reason = models.CharField(max_length=200, blank=True)
    attributed_at = models.DateTimeField(null=True, blank=True)
    attribution_error = models.TextField(blank=True)
    lead = models.ForeignKey(Lead, null=True, blank=True, on_delete=models.SET_NULL, related_name="letters")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["mailbox", "folder", "uidvalidity", "uid"],
                condition=Q(uid__isnull=False),
                name="letter_unique_uid",
            ),
            models.UniqueConstraint(fields=["mailbox", "dedupe_key"], name="letter_unique_dedupe_key"),
        ]
        indexes = [
            models.Index(fields=["mailbox", "sender_email", "received_at"], name="letter_sender_received"),
            models.Index(fields=["message_id"], name="letter_message_id"),
        ]

    def __str__(self):
        return f"{self.sender_email}: {self.subject}"
