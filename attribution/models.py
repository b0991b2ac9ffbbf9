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


class Tag(models.Model):
    """A marketer's label for leads, per project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=50)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="tag_unique_name")]

    def __str__(self):
        return self.name


class Exclusion(models.Model):
    """A sender or a whole domain whose letters are never leads (suppliers, colleagues)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exclusions")
    value = models.CharField(
        max_length=320, help_text="An address (anna@supplier.ru) or a domain (supplier.ru, subdomains included)."
    )
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "value"], name="exclusion_unique_value")]

    def __str__(self):
        return self.value

    def save(self, *args, **kwargs):
        self.value = self.value.strip().lower().removeprefix("@")
        super().save(*args, **kwargs)


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
    tags = models.ManyToManyField(Tag, blank=True, related_name="leads")
    comment = models.TextField(blank=True, max_length=5000)
    deal_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)

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
            models.Index(fields=["project", "updated_at", "id"], name="lead_project_updated"),
        ]

    def __str__(self):
        return f"{self.sender_email}: {self.subject}"


class ErasedSender(models.Model):
    """A sender whose letters' personal data retention has erased, kept as a
    keyed digest of the address (not reversible without the server's secret,
    and different in each project) with the time of their first lead letter,
    so a later letter from them is still seen as a returning customer's."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="erased_senders")
    digest = models.CharField(max_length=64)
    first_letter_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "digest"], name="erased_sender_unique_digest")]

    def __str__(self):
        return f"{self.digest[:12]}… since {self.first_letter_at:%Y-%m-%d}"
