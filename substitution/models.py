import re

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from projects.models import Project

from .conditions import REGEX_MAX_LENGTH, compile_pattern, parse_schedule

BLOCK_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
# Rules point to the tracker's sites and leases to its visitors by name: the
# tracker calls substitution, never the other way round.
SITE = "tracker.Site"
VISITOR = "tracker.Visitor"


class Pool(models.Model):
    """Addresses leased one visitor at a time."""

    class Kind(models.TextChoices):
        PLUS = "plus", _("Generated plus-addresses (local+token@domain)")
        DASH = "dash", _("Generated catch-all addresses (local-token@domain)")
        UPLOADED = "uploaded", _("Uploaded list of real addresses (aliases)")

    class ExhaustedPolicy(models.TextChoices):
        ORIGINAL = "original", _("Show the site's original address")
        TAKE_OVER = "take_over", _("Take over the least recently active lease")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pools", verbose_name=_("project"))
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices, default=Kind.PLUS)
    base_email = models.EmailField(
        _("base email"),
        help_text=_("The real inbox, e.g. info@example.com; generated tokens are added to its local part."),
    )
    size = models.PositiveIntegerField(
        _("size"), default=20, help_text=_("Generated pools only; an uploaded pool is its list.")
    )
    hold_minutes = models.PositiveIntegerField(
        _("hold minutes"),
        default=30,
        help_text=_("How long an address stays with a visitor after their last activity."),
    )
    exhausted_policy = models.CharField(
        _("exhausted policy"), max_length=16, choices=ExhaustedPolicy.choices, default=ExhaustedPolicy.ORIGINAL
    )
    max_live_leases_per_ip = models.PositiveIntegerField(
        _("max live leases per ip"),
        default=5,
        help_text=_("Abuse cap: live leases one client IP may hold; above it the original address is shown."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("pool")
        verbose_name_plural = _("pools")
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def generated(self) -> bool:
        return self.kind in (self.Kind.PLUS, self.Kind.DASH)


class Address(models.Model):
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="addresses", verbose_name=_("pool"))
    email = models.EmailField(_("email"), unique=True)
    token = models.CharField(_("token"), max_length=32, blank=True)
    active = models.BooleanField(_("active"), default=True)
    # True while a lease holds it, written in the allocating transaction: the
    # row lock plus this flag make concurrent allocations skip to other rows.
    held = models.BooleanField(_("held"), default=False)
    # When its last lease ended: allocation takes the address free longest (LRU).
    last_released_at = models.DateTimeField(_("last released at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("address")
        verbose_name_plural = _("addresses")
        constraints = [
            models.UniqueConstraint(fields=["pool", "token"], condition=~Q(token=""), name="address_unique_token")
        ]
        # The allocation order's index (free addresses, never used first, then
        # released longest ago) is created by migration 0004 in SQL, because
        # SQLite's CREATE INDEX takes no NULLS FIRST (its ascending order puts
        # NULLs first anyway).

    def __str__(self):
        return self.email


class Block(models.Model):
    """One tracked address on the page: where the snippet finds it and
    replaces it with the address a rule decides."""

    class Kind(models.TextChoices):
        FIND = "find", _("Find the original email in the page (text, mailto: links, attributes)")
        ID = "id", _("Element by id")
        CLASS = "class", _("Elements by class")
        SELECTOR = "selector", _("Elements by CSS selector")
        ATTRIBUTE = "attribute", _("Elements carrying an attribute (its value is replaced)")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="blocks", verbose_name=_("project"))
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.FIND)
    selector = models.CharField(
        _("selector"),
        max_length=500,
        blank=True,
        help_text=_("The id, class, CSS selector or attribute name; empty for 'find in the page'."),
    )
    original_email = models.EmailField(
        _("original email"),
        blank=True,
        help_text=_(
            "The address this block finds and replaces, e.g. sales@example.com; empty: the site's original address."
        ),
    )

    class Meta:
        verbose_name = _("block")
        verbose_name_plural = _("blocks")

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        self.original_email = self.original_email.strip().lower()
        super().save(*args, **kwargs)

    def clean(self):
        if self.kind == self.Kind.FIND:
            self.selector = ""
        elif not self.selector.strip():
            raise ValidationError({"selector": "This kind of block needs an id, class, selector or attribute name."})
        elif self.kind in (self.Kind.ID, self.Kind.CLASS, self.Kind.ATTRIBUTE) and not BLOCK_NAME_RE.match(
            self.selector
        ):
            raise ValidationError({"selector": "Use a plain name: letters, digits, '-', '_' or ':'."})


class StaticAddress(models.Model):
    """One address = one channel: offline ads, map cards, classifieds. A
    letter to it is a lead from that channel, with or without a web session."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="static_addresses", verbose_name=_("project")
    )
    name = models.CharField(
        _("name"), max_length=200, help_text=_("e.g. Billboard, Tverskaya st.; Yandex Maps card; Avito ad")
    )
    email = models.EmailField(_("email"), unique=True)
    channel = models.CharField(
        _("channel"), max_length=16, default="static", help_text=_("Channel reported for its leads")
    )
    source = models.CharField(
        _("source"), max_length=200, blank=True, help_text=_("e.g. billboard, yandex_maps, avito")
    )
    medium = models.CharField(_("medium"), max_length=200, blank=True)
    campaign = models.CharField(_("campaign"), max_length=200, blank=True)
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("static address")
        verbose_name_plural = _("static addresses")
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} <{self.email}>"

    def save(self, *args, **kwargs):
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)


class Rule(models.Model):
    """For each block it covers, the first matching active rule (by order)
    decides what a visitor is shown there."""

    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", _("Dynamic: lease an address from a pool")
        STATIC = "static", _("Static: show a channel's fixed address")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rules", verbose_name=_("project"))
    name = models.CharField(_("name"), max_length=200)
    sites = models.ManyToManyField(SITE, related_name="rules", verbose_name=_("sites"))
    order = models.PositiveIntegerField(
        _("order"), default=0, help_text=_("Lower first: for each block, the first matching rule decides.")
    )
    active = models.BooleanField(_("active"), default=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.DYNAMIC)
    pool = models.ForeignKey(
        Pool, null=True, blank=True, on_delete=models.PROTECT, related_name="rules", verbose_name=_("pool")
    )
    static_address = models.ForeignKey(
        StaticAddress,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rules",
        verbose_name=_("static address"),
    )
    blocks = models.ManyToManyField(Block, related_name="rules", verbose_name=_("blocks"))

    class Meta:
        verbose_name = _("rule")
        verbose_name_plural = _("rules")
        ordering = ["order", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="dynamic", pool__isnull=False, static_address__isnull=True))
                | (Q(kind="static", static_address__isnull=False, pool__isnull=True)),
                name="rule_dynamic_pool_or_static_address",
            )
        ]

    def __str__(self):
        return self.name

    def clean(self):
        if self.kind == self.Kind.DYNAMIC and (self.pool_id is None or self.static_address_id is not None):
            raise ValidationError(_("A dynamic rule leases from a pool: choose a pool and no static address."))
        if self.kind == self.Kind.STATIC and (self.static_address_id is None or self.pool_id is not None):
            raise ValidationError(_("A static rule shows a static address: choose one and no pool."))


class RuleCondition(models.Model):
    """All of a rule's conditions must hold for the rule to match."""

    class Field(models.TextChoices):
        UTM_SOURCE = "utm_source", _("utm_source")
        UTM_MEDIUM = "utm_medium", _("utm_medium")
        UTM_CAMPAIGN = "utm_campaign", _("utm_campaign")
        UTM_TERM = "utm_term", _("utm_term")
        UTM_CONTENT = "utm_content", _("utm_content")
        REFERRER_DOMAIN = "referrer_domain", _("Referrer domain")
        LANDING_URL = "landing_url", _("Landing page URL")
        CHANNEL = "channel", _("Channel")
        DEVICE_TYPE = "device_type", _("Device type")
        PAGE_URL = "page_url", _("Current page URL")
        COUNTRY = "country", _("Country (ISO code, e.g. RU)")
        REGION = "region", _("Region")
        CITY = "city", _("City")
        SCHEDULE = "schedule", _("Schedule (days and hours, e.g. mon-fri 09:00-18:00)")

    class Operator(models.TextChoices):
        EQUALS = "equals", _("equals")
        CONTAINS = "contains", _("contains")
        MATCHES = "matches", _("matches (regular expression)")

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="conditions", verbose_name=_("rule"))
    field = models.CharField(_("field"), max_length=32, choices=Field.choices)
    operator = models.CharField(_("operator"), max_length=16, choices=Operator.choices, default=Operator.EQUALS)
    value = models.CharField(_("value"), max_length=REGEX_MAX_LENGTH)
    negate = models.BooleanField(_("negate"), default=False, help_text=_("Match when the condition does NOT hold."))

    class Meta:
        verbose_name = _("rule condition")
        verbose_name_plural = _("rule conditions")

    def __str__(self):
        return f"{self.field} {'not ' if self.negate else ''}{self.operator} {self.value!r}"

    def clean(self):
        try:
            if self.field == self.Field.SCHEDULE:
                parse_schedule(self.value)
            elif self.operator == self.Operator.MATCHES:
                compile_pattern(self.value)
        except ValueError as error:
            raise ValidationError({"value": str(error)}) from error


class Lease(models.Model):
    """An address held by one visitor; history is kept (released leases stay)."""

    class EndReason(models.TextChoices):
        EXPIRED = "expired", _("Expired after hold")
        TAKEN_OVER = "taken_over", _("Taken over (pool exhausted)")

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="leases", verbose_name=_("pool"))
    # Looked up by address through lease_address_started (address, started_at):
    # no index of its own, one less to write for every lease.
    address = models.ForeignKey(
        Address, on_delete=models.CASCADE, related_name="leases", verbose_name=_("address"), db_index=False
    )
    visitor = models.ForeignKey(VISITOR, on_delete=models.CASCADE, related_name="leases", verbose_name=_("visitor"))
    # The block the address was first shown in (a pool may serve several):
    # which public address a lead came through. No index of its own: leases
    # are read by block only within a pool (pool health), and a block's
    # deletion (an admin's rare act) may scan the leases; every new lease
    # wrote an entry in it.
    block = models.ForeignKey(
        Block,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="leases",
        verbose_name=_("block"),
        db_index=False,
    )
    started_at = models.DateTimeField(_("started at"))
    last_activity_at = models.DateTimeField(_("last activity at"))
    expires_at = models.DateTimeField(_("expires at"))
    released_at = models.DateTimeField(_("released at"), null=True, blank=True)
    end_reason = models.CharField(_("end reason"), max_length=16, choices=EndReason.choices, blank=True)
    # A keyed hash of the client IP, for the per-IP abuse cap; never the IP itself.
    ip_hash = models.CharField(_("ip hash"), max_length=32, blank=True)

    class Meta:
        verbose_name = _("lease")
        verbose_name_plural = _("leases")
        constraints = [
            # The database itself refuses two unreleased leases on one address,
            # and two for one visitor in one pool.
            models.UniqueConstraint(
                fields=["address"], condition=Q(released_at__isnull=True), name="lease_one_live_per_address"
            ),
            models.UniqueConstraint(
                fields=["pool", "visitor"], condition=Q(released_at__isnull=True), name="lease_one_live_per_visitor"
            ),
        ]
        indexes = [
            models.Index(fields=["address", "started_at"], name="lease_address_started"),
            models.Index(
                fields=["pool", "expires_at"], condition=Q(released_at__isnull=True), name="lease_pool_unreleased"
            ),
            models.Index(
                fields=["pool", "ip_hash"], condition=Q(released_at__isnull=True), name="lease_pool_ip_unreleased"
            ),
        ]

    def __str__(self):
        return f"{self.address} → {self.visitor}"


class PoolExhaustion(models.Model):
    """A visitor asked for an address when the pool had none free."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="exhaustions", verbose_name=_("pool"))
    at = models.DateTimeField(_("at"))
    policy = models.CharField(_("policy"), max_length=16, choices=Pool.ExhaustedPolicy.choices)

    class Meta:
        verbose_name = _("pool exhaustion")
        verbose_name_plural = _("pool exhaustions")
        indexes = [models.Index(fields=["pool", "at"], name="exhaustion_pool_at")]

    def __str__(self):
        return f"{self.pool} exhausted at {self.at:%Y-%m-%d %H:%M}"
