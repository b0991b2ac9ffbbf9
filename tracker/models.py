import secrets

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from projects.models import Project

from .domains import DOMAIN_RE, parse_domains

SITE_KEY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_site_key() -> str:
    return "".join(secrets.choice(SITE_KEY_ALPHABET) for _ in range(16))


class Channel(models.TextChoices):
    PAID = "paid", _("Paid search / ads")
    ORGANIC = "organic", _("Organic search")
    PAID_SOCIAL = "paid_social", _("Paid social")
    SOCIAL = "social", _("Social")
    DISPLAY = "display", _("Display / banners")
    REFERRAL = "referral", _("Referral")
    EMAIL = "email", _("Email")
    DIRECT = "direct", _("Direct")
    STATIC = "static", _("Static channel")
    UNKNOWN = "unknown", _("Unknown")


class DeviceType(models.TextChoices):
    DESKTOP = "desktop", _("Desktop")
    MOBILE = "mobile", _("Mobile")
    TABLET = "tablet", _("Tablet")
    BOT = "bot", _("Bot")
    UNKNOWN = "", _("Unknown")


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
    bad = [name for name in parse_domains(value) if not DOMAIN_RE.match(name)]
    if bad:
        raise ValidationError(_("Not a domain: %(names)s"), params={"names": ", ".join(bad[:5])})


class Site(models.Model):
    """A tracked web site: its public key is in the snippet tag."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="sites", verbose_name=_("project"))
    name = models.CharField(_("name"), max_length=200)
    site_key = models.CharField(_("site key"), max_length=32, unique=True, default=new_site_key, editable=False)
    original_email = models.EmailField(
        _("original email"), help_text=_("The address the site shows; the snippet replaces it.")
    )
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    referral_exclusions = models.TextField(
        _("referral exclusions"),
        blank=True,
        validators=[validate_domain_list],
        help_text=format_lazy(
            _(
                "Referrers treated as no referrer, one domain per line (subdomains included): payment gateways "
                "and sign-in providers a visitor comes back from. The site's own domains are always excluded. "
                "Common ones: {domains}."
            ),
            domains=", ".join(SUGGESTED_REFERRAL_EXCLUSIONS),
        ),
    )
    last_non_direct_days = models.PositiveSmallIntegerField(
        _("last non-direct period, days"),
        default=30,
        help_text=_("A direct visit within this many days of a visit from a source keeps that source; 0 turns it off."),
    )

    class Meta:
        verbose_name = _("site")
        verbose_name_plural = _("sites")
        ordering = ["name"]

    def __str__(self):
        return self.name


class SiteDomain(models.Model):
    """A domain the snippet may report from (subdomains included)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="domains", verbose_name=_("site"))
    domain = models.CharField(
        _("domain"), max_length=253, help_text=_("e.g. example.com (www. and other subdomains included)")
    )
    last_seen_at = models.DateTimeField(_("last seen at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("site domain")
        verbose_name_plural = _("site domains")
        constraints = [models.UniqueConstraint(fields=["site", "domain"], name="sitedomain_unique")]

    def __str__(self):
        return self.domain


class Visitor(models.Model):
    """One browser on one site, known by a first-party id the snippet keeps."""

    # Looked up by site through visitor_unique_vid (site, vid): no index of its own,
    # one less to write for every new visitor.
    site = models.ForeignKey(
        Site, on_delete=models.CASCADE, related_name="visitors", verbose_name=_("site"), db_index=False
    )
    vid = models.CharField(_("vid"), max_length=64)
    created_at = models.DateTimeField(_("created at"))
    last_seen_at = models.DateTimeField(_("last seen at"))

    class Meta:
        verbose_name = _("visitor")
        verbose_name_plural = _("visitors")
        constraints = [models.UniqueConstraint(fields=["site", "vid"], name="visitor_unique_vid")]

    def __str__(self):
        return self.vid


class Session(models.Model):
    """A visit: starts on the first page view, ends after 30 minutes without
    activity or when the visitor arrives from a new campaign."""

    # Looked up by visitor through session_visitor_started (visitor, -started_at).
    visitor = models.ForeignKey(
        Visitor, on_delete=models.CASCADE, related_name="sessions", verbose_name=_("visitor"), db_index=False
    )
    started_at = models.DateTimeField(_("started at"))
    last_seen_at = models.DateTimeField(_("last seen at"))
    returning_visitor = models.BooleanField(
        _("returning visitor"), default=False, help_text=_("The visitor had been on the site before")
    )
    landing_url = models.URLField(_("landing url"), max_length=2000, blank=True)
    referrer = models.URLField(_("referrer"), max_length=2000, blank=True)
    utm_source = models.CharField(_("utm source"), max_length=200, blank=True)
    utm_medium = models.CharField(_("utm medium"), max_length=200, blank=True)
    utm_campaign = models.CharField(_("utm campaign"), max_length=200, blank=True)
    utm_term = models.CharField(_("utm term"), max_length=200, blank=True)
    utm_content = models.CharField(_("utm content"), max_length=200, blank=True)
    click_ids = models.JSONField(_("click ids"), default=dict, blank=True)
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices, default=Channel.DIRECT)
    source = models.CharField(
        _("source"), max_length=200, blank=True, help_text=_("utm_source, else the referrer's domain")
    )
    keyword = models.CharField(_("keyword"), max_length=200, blank=True)
    search_engine = models.CharField(_("search engine"), max_length=32, blank=True)
    source_inherited = models.BooleanField(
        _("source inherited"),
        default=False,
        help_text=_("A direct visit that kept the source of the visitor's earlier visit (last non-direct)"),
    )
    page_views = models.PositiveIntegerField(_("page views"), default=0)
    last_urls = models.JSONField(_("last urls"), default=list, blank=True)
    device_type = models.CharField(_("device type"), max_length=16, choices=DeviceType.choices, blank=True)
    os = models.CharField(_("OS"), max_length=64, blank=True)
    os_version = models.CharField(_("OS version"), max_length=32, blank=True)
    browser = models.CharField(_("browser"), max_length=64, blank=True)
    browser_version = models.CharField(_("browser version"), max_length=32, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=500, blank=True)
    screen = models.CharField(_("screen"), max_length=32, blank=True)
    lang = models.CharField(_("lang"), max_length=35, blank=True)
    ga_client_id = models.CharField(_("ga client id"), max_length=100, blank=True)
    ym_client_id = models.CharField(_("ym client id"), max_length=100, blank=True)
    country = models.CharField(_("country"), max_length=2, blank=True)
    region = models.CharField(_("region"), max_length=100, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    ip_truncated = models.GenericIPAddressField(
        _("IP (truncated)"),
        null=True,
        blank=True,
        help_text=_("The network of the visitor's address: IPv4 /24, IPv6 /48"),
    )

    class Meta:
        verbose_name = _("session")
        verbose_name_plural = _("sessions")
        indexes = [
            models.Index(fields=["visitor", "-started_at"], name="session_visitor_started"),
            # Retention finds old sessions by start (never updated, so page views keep HOT updates).
            models.Index(fields=["started_at"], name="session_started"),
        ]

    def __str__(self):
        return f"{self.channel} {self.source} {self.started_at:%Y-%m-%d %H:%M}"


class BotHit(models.Model):
    """Page views from known bots on one site in one day (UTC): counted, given no address."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="bot_hits", verbose_name=_("site"))
    day = models.DateField(_("day"))
    count = models.PositiveIntegerField(_("count"), default=0)

    class Meta:
        verbose_name = _("bot hit")
        verbose_name_plural = _("bot hits")
        constraints = [models.UniqueConstraint(fields=["site", "day"], name="bothit_unique_site_day")]
        ordering = ["-day"]

    def __str__(self):
        return f"{self.site} {self.day}: {self.count}"
