import secrets

from django.core.exceptions import ValidationError
from django.db import models

from projects.models import Project

SITE_KEY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_site_key() -> str:
    return "".join(secrets.choice(SITE_KEY_ALPHABET) for _ in range(16))


class Channel(models.TextChoices):
    PAID = "paid", "Paid search / ads"
    ORGANIC = "organic", "Organic search"
    PAID_SOCIAL = "paid_social", "Paid social"
    SOCIAL = "social", "Social"
    DISPLAY = "display", "Display / banners"
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


# Offered in the admin: sites a visitor passes through and comes back from,
# which must not become the source of the rest of the visit.
SUGGESTED_REFERRAL_EXCLUSIONS = (
    "paypal.com",
    "checkout.stripe.com",
    "yoomoney.ru",
    "yookassa.ru",
    "pay.cloudpayments.ru",
    "securepay.tinkoff.ru",
    "accounts.google.com",
    "oauth.yandex.ru",
    "id.vk.com",
    "appleid.apple.com",
    "login.microsoftonline.com",
)


def validate_domain_list(value: str):
    """One domain per line ("#" starts a comment); a pasted URL is cut to its host."""
    from .channels import DOMAIN_RE, parse_domains

    bad = [name for name in parse_domains(value) if not DOMAIN_RE.match(name)]
    if bad:
        raise ValidationError("Not a domain: %(names)s", params={"names": ", ".join(bad[:5])})


class Site(models.Model):
    """A tracked web site: its public key is in the snippet tag."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="sites")
    name = models.CharField(max_length=200)
    site_key = models.CharField(max_length=32, unique=True, default=new_site_key, editable=False)
    original_email = models.EmailField(help_text="The address the site shows; the snippet replaces it.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    referral_exclusions = models.TextField(
        blank=True,
        validators=[validate_domain_list],
        help_text=(
            "Referrers treated as no referrer, one domain per line (subdomains included): payment gateways "
            "and sign-in providers a visitor comes back from. The site's own domains are always excluded. "
            "Common ones: " + ", ".join(SUGGESTED_REFERRAL_EXCLUSIONS) + "."
        ),
    )
    last_non_direct_days = models.PositiveSmallIntegerField(
        "last non-direct period, days",
        default=30,
        help_text="A direct visit within this many days of a visit from a source keeps that source; 0 turns it off.",
    )

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
    returning_visitor = models.BooleanField(default=False, help_text="The visitor had been on the site before")
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
    search_engine = models.CharField(max_length=32, blank=True)
    source_inherited = models.BooleanField(
        default=False,
        help_text="A direct visit that kept the source of the visitor's earlier visit (last non-direct)",
    )
    page_views = models.PositiveIntegerField(default=0)
    last_urls = models.JSONField(default=list, blank=True)
    device_type = models.CharField(max_length=16, choices=DeviceType.choices, blank=True)
    os = models.CharField("OS", max_length=64, blank=True)
    os_version = models.CharField("OS version", max_length=32, blank=True)
    browser = models.CharField(max_length=64, blank=True)
    browser_version = models.CharField(max_length=32, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    screen = models.CharField(max_length=32, blank=True)
    lang = models.CharField(max_length=35, blank=True)
    ga_client_id = models.CharField(max_length=100, blank=True)
    ym_client_id = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=2, blank=True)
    city = models.CharField(max_length=100, blank=True)
    ip_truncated = models.GenericIPAddressField(
        "IP (truncated)", null=True, blank=True, help_text="The network of the visitor's address: IPv4 /24, IPv6 /48"
    )

    class Meta:
        indexes = [
            models.Index(fields=["visitor", "-started_at"], name="session_visitor_started"),
            # Retention finds old sessions by start (never updated, so page views keep HOT updates).
            models.Index(fields=["started_at"], name="session_started"),
        ]

    def __str__(self):
        return f"{self.channel} {self.source} {self.started_at:%Y-%m-%d %H:%M}"


class BotHit(models.Model):
    """Page views from known bots on one site in one day (UTC): counted, given no address."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="bot_hits")
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "day"], name="bothit_unique_site_day")]
        ordering = ["-day"]

    def __str__(self):
        return f"{self.site} {self.day}: {self.count}"
