import secrets

from django.db import models

from projects.models import Project

SITE_KEY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_site_key() -> str:
    return "".join(secrets.choice(SITE_KEY_ALPHABET) for _ in range(16))


class Channel(models.TextChoices):
    PAID = "paid", "Paid search / ads"
    ORGANIC = "organic", "Organic search"
    SOCIAL = "social", "Social"
    REFERRAL = "referral", "Referral"
    EMAIL = "email", "Email"
    DIRECT = "direct", "Direct"
    STATIC = "static", "Static channel"
    UNKNOWN = "unknown", "Unknown"


class DeviceType(models.TextChoices):
    DESKTOP = "desktop", "Desktop"
    MOBILE = "mobile", "Mobile"
    TABLET = "tablet", "Tablet"
    BOT = "bot", "Bot"
    UNKNOWN = "", "Unknown"


class Site(models.Model):
    """A tracked web site: its public key is in the snippet tag."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="sites")
    name = models.CharField(max_length=200)
    site_key = models.CharField(max_length=32, unique=True, default=new_site_key, editable=False)
    original_email = models.EmailField(help_text="The address the site shows; the snippet replaces it.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class SiteDomain(models.Model):
    """A domain the snippet may report from (subdomains included)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(max_length=253, help_text="e.g. example.com (www. and other subdomains included)")
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "domain"], name="sitedomain_unique")]

    def __str__(self):
        return self.domain


class Visitor(models.Model):
    """One browser on one site, known by a first-party id the snippet keeps."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="visitors")
    vid = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "vid"], name="visitor_unique_vid")]

    def __str__(self):
        return self.vid


class Session(models.Model):
    """A visit: starts on the first page view, ends after 30 minutes without
    activity or when the visitor arrives from a new campaign."""

    visitor = models.ForeignKey(Visitor, on_delete=models.CASCADE, related_name="sessions")
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    landing_url = models.URLField(max_length=2000, blank=True)
    referrer = models.URLField(max_length=2000, blank=True)
    utm_source = models.CharField(max_length=200, blank=True)
    utm_medium = models.CharField(max_length=200, blank=True)
    utm_campaign = models.CharField(max_length=200, blank=True)
    utm_term = models.CharField(max_length=200, blank=True)
    utm_content = models.CharField(max_length=200, blank=True)
    click_ids = models.JSONField(default=dict, blank=True)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.DIRECT)
    source = models.CharField(max_length=200, blank=True, help_text="utm_source, else the referrer's domain")
    keyword = models.CharField(max_length=200, blank=True)
    page_views = models.PositiveIntegerField(default=0)
    last_urls = models.JSONField(default=list, blank=True)
    device_type = models.CharField(max_length=16, choices=DeviceType.choices, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    screen = models.CharField(max_length=32, blank=True)
    lang = models.CharField(max_length=35, blank=True)
    ga_client_id = models.CharField(max_length=100, blank=True)
    ym_client_id = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=2, blank=True)
    city = models.CharField(max_length=100, blank=True)

    class Meta:
        indexes = [models.Index(fields=["visitor", "-started_at"], name="session_visitor_started")]

    def __str__(self):
        return f"{self.channel} {self.source} {self.started_at:%Y-%m-%d %H:%M}"
