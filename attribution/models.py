from django.db import models

from projects.models import Project
from substitution.models import Address, Lease
from tracker.models import Channel, Session, Site, Visitor


class MatchKind(models.TextChoices):
    LIVE_LEASE = "live_lease", "Live lease"
    AFTER_HOLD = "after_hold", "After hold"
    REUSED_SINCE = "reused_since", "Reused since (low confidence)"
    TAKEN_OVER = "taken_over", "Taken over"
    STATIC = "static", "Static channel"
    CORRECTED = "corrected", "Corrected token"
    AMBIGUOUS = "ambiguous", "Ambiguous token (low confidence)"
    UNKNOWN = "unknown", "Unknown (main address)"
    EXHAUSTED = "exhausted", "Pool exhausted"


class Lead(models.Model):
    """An enquiry: one or more letters with the source of the visitor who wrote."""

    class Status(models.TextChoices):
        NEW = "new", "New"
        IN_PROGRESS = "in_progress", "In progress"
        WON = "won", "Won"
        LOST = "lost", "Lost"
        SPAM = "spam", "Spam"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="leads")
    created_at = models.DateTimeField(help_text="Attribution time of the lead's first letter")
    last_letter_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)
    sender_email = models.EmailField(max_length=320, blank=True)
    sender_name = models.CharField(max_length=200, blank=True)
    subject = models.CharField(max_length=500, blank=True)
    recipient = models.EmailField(max_length=320, blank=True, help_text="The tracked address the letter was sent to")
    match_kind = models.CharField(max_length=16, choices=MatchKind.choices)
    first_contact = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)

    address = models.ForeignKey(Address, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads")
    lease = models.ForeignKey(Lease, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads")
    visitor = models.ForeignKey(Visitor, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads")
    session = models.ForeignKey(Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads")
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads")

    # Copied from the session so reports need no joins.
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.UNKNOWN)
    source = models.CharField(max_length=200, blank=True)
    medium = models.CharField(max_length=200, blank=True)
    campaign = models.CharField(max_length=200, blank=True)
    term = models.CharField(max_length=200, blank=True)
    content = models.CharField(max_length=200, blank=True)
    keyword = models.CharField(max_length=200, blank=True)
    landing_url = models.URLField(max_length=2000, blank=True)
    referrer = models.URLField(max_length=2000, blank=True)
    device_type = models.CharField(max_length=16, blank=True)
    country = models.CharField(max_length=2, blank=True)
    city = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at", "-id"], name="lead_project_created"),
            models.Index(fields=["project", "sender_email"], name="lead_project_sender"),
        ]

    def __str__(self):
        return f"{self.sender_email}: {self.subject}"
