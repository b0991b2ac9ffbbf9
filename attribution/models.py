from django.db import models
from django.utils.translation import gettext_lazy as _

from projects.models import Project
from substitution.models import Address, Lease
from tracker.models import Channel, Session, Site, Visitor


class MatchKind(models.TextChoices):
    LIVE_LEASE = "live_lease", _("Live lease")
    AFTER_HOLD = "after_hold", _("After hold")
    REUSED_SINCE = "reused_since", _("Reused since (low confidence)")
    TAKEN_OVER = "taken_over", _("Taken over")
    STATIC = "static", _("Static channel")
    CORRECTED = "corrected", _("Corrected token")
    AMBIGUOUS = "ambiguous", _("Ambiguous token (low confidence)")
    UNKNOWN = "unknown", _("Unknown (main address)")
    EXHAUSTED = "exhausted", _("Pool exhausted")


class Tag(models.Model):
    """A marketer's label for leads, per project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tags", verbose_name=_("project"))
    name = models.CharField(_("name"), max_length=50)

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="tag_unique_name")]

    def __str__(self):
        return self.name


class Exclusion(models.Model):
    """A sender or a whole domain whose letters are never leads (suppliers, colleagues)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exclusions", verbose_name=_("project"))
    value = models.CharField(
        _("value"),
        max_length=320,
        help_text=_("An address (anna@supplier.ru) or a domain (supplier.ru, subdomains included)."),
    )
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("exclusion")
        verbose_name_plural = _("exclusions")
        constraints = [models.UniqueConstraint(fields=["project", "value"], name="exclusion_unique_value")]

    def __str__(self):
        return self.value

    def save(self, *args, **kwargs):
        self.value = self.value.strip().lower().removeprefix("@")
        super().save(*args, **kwargs)


class Lead(models.Model):
    """An enquiry: one or more letters with the source of the visitor who wrote."""

    class Status(models.TextChoices):
        NEW = "new", _("New")
        IN_PROGRESS = "in_progress", _("In progress")
        WON = "won", _("Won")
        LOST = "lost", _("Lost")
        SPAM = "spam", _("Spam")

    # No index of its own: the journal's indexes below (and those of
    # migration 0004) all start with the project, and every lead a sync makes
    # wrote one more index entry.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="leads", verbose_name=_("project"), db_index=False
    )
    created_at = models.DateTimeField(_("created at"), help_text=_("Attribution time of the lead's first letter"))
    last_letter_at = models.DateTimeField(_("last letter at"))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    sender_email = models.EmailField(_("sender email"), max_length=320, blank=True)
    sender_name = models.CharField(_("sender name"), max_length=200, blank=True)
    subject = models.CharField(_("subject"), max_length=500, blank=True)
    recipient = models.EmailField(
        _("recipient"), max_length=320, blank=True, help_text=_("The tracked address the letter was sent to")
    )
    match_kind = models.CharField(_("match kind"), max_length=16, choices=MatchKind.choices)
    first_contact = models.BooleanField(_("first contact"), default=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.NEW)
    tags = models.ManyToManyField(Tag, blank=True, related_name="leads", verbose_name=_("tags"))
    comment = models.TextField(_("comment"), blank=True, max_length=5000)
    deal_amount = models.DecimalField(_("deal amount"), max_digits=14, decimal_places=2, null=True, blank=True)

    address = models.ForeignKey(
        Address, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads", verbose_name=_("address")
    )
    lease = models.ForeignKey(
        Lease, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads", verbose_name=_("lease")
    )
    visitor = models.ForeignKey(
        Visitor, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads", verbose_name=_("visitor")
    )
    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads", verbose_name=_("session")
    )
    site = models.ForeignKey(
        Site, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads", verbose_name=_("site")
    )

    # Copied from the session so reports need no joins.
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices, default=Channel.UNKNOWN)
    source = models.CharField(_("source"), max_length=200, blank=True)
    medium = models.CharField(_("medium"), max_length=200, blank=True)
    campaign = models.CharField(_("campaign"), max_length=200, blank=True)
    term = models.CharField(_("term"), max_length=200, blank=True)
    content = models.CharField(_("content"), max_length=200, blank=True)
    keyword = models.CharField(_("keyword"), max_length=200, blank=True)
    landing_url = models.URLField(_("landing url"), max_length=2000, blank=True)
    referrer = models.URLField(_("referrer"), max_length=2000, blank=True)
    device_type = models.CharField(_("device type"), max_length=16, blank=True)
    country = models.CharField(_("country"), max_length=2, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)

    class Meta:
        verbose_name = _("lead")
        verbose_name_plural = _("leads")
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

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="erased_senders", verbose_name=_("project")
    )
    digest = models.CharField(_("digest"), max_length=64)
    first_letter_at = models.DateTimeField(_("first letter at"))

    class Meta:
        verbose_name = _("erased sender")
        verbose_name_plural = _("erased senders")
        constraints = [models.UniqueConstraint(fields=["project", "digest"], name="erased_sender_unique_digest")]

    def __str__(self):
        return f"{self.digest[:12]}… since {self.first_letter_at:%Y-%m-%d}"
