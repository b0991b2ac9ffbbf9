import re

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from projects.models import Project
from tracker.models import Site, Visitor

BLOCK_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
REGEX_MAX_LENGTH = 200


class Pool(models.Model):
    """Addresses leased one visitor at a time."""

    class Kind(models.TextChoices):
        PLUS = "plus", "Generated plus-addresses (local+token@domain)"
        DASH = "dash", "Generated catch-all addresses (local-token@domain)"
        UPLOADED = "uploaded", "Uploaded list of real addresses (aliases)"

    class ExhaustedPolicy(models.TextChoices):
        ORIGINAL = "original", "Show the site's original address"
        TAKE_OVER = "take_over", "Take over the least recently active lease"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pools")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.PLUS)
    base_email = models.EmailField(
        help_text="The real inbox, e.g. info@example.com; generated tokens are added to its local part."
    )
    size = models.PositiveIntegerField(default=20, help_text="Generated pools only; an uploaded pool is its list.")
    hold_minutes = models.PositiveIntegerField(
        default=30, help_text="How long an address stays with a visitor after their last activity."
    )
    exhausted_policy = models.CharField(
        max_length=16, choices=ExhaustedPolicy.choices, default=ExhaustedPolicy.ORIGINAL
    )
    max_live_leases_per_ip = models.PositiveIntegerField(
        default=5,
        help_text="Abuse cap: live leases one client IP may hold; above it the original address is shown.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def generated(self) -> bool:
        return self.kind in (self.Kind.PLUS, self.Kind.DASH)


class Address(models.Model):
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="addresses")
    email = models.EmailField(unique=True)
    token = models.CharField(max_length=32, blank=True)
    active = models.BooleanField(default=True)
    # True while a lease holds it, written in the allocating transaction: the
    # row lock plus this flag make concurrent allocations skip to other rows.
    held = models.BooleanField(default=False)
    # When its last lease ended: allocation takes the address free longest (LRU).
    last_released_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
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
    """What the snippet replaces on the page."""

    class Kind(models.TextChoices):
        FIND = "find", "Find the original email in the page (text, mailto: links, attributes)"
        ID = "id", "Element by id"
        CLASS = "class", "Elements by class"
        SELECTOR = "selector", "Elements by CSS selector"
        ATTRIBUTE = "attribute", "Elements carrying an attribute (its value is replaced)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="blocks")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.FIND)
    selector = models.CharField(
        max_length=500,
        blank=True,
        help_text="The id, class, CSS selector or attribute name; empty for 'find in the page'.",
    )

    def __str__(self):
        return self.name

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

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="static_addresses")
    name = models.CharField(max_length=200, help_text="e.g. Billboard, Tverskaya st.; Yandex Maps card; Avito ad")
    email = models.EmailField(unique=True)
    channel = models.CharField(max_length=16, default="static", help_text="Channel reported for its leads")
    source = models.CharField(max_length=200, blank=True, help_text="e.g. billboard, yandex_maps, avito")
    medium = models.CharField(max_length=200, blank=True)
    campaign = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "static addresses"
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} <{self.email}>"

    def save(self, *args, **kwargs):
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)


class Rule(models.Model):
    """First matching active rule (by order) decides what a visitor is shown."""

    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", "Dynamic: lease an address from a pool"
        STATIC = "static", "Static: show a channel's fixed address"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rules")
    name = models.CharField(max_length=200)
    sites = models.ManyToManyField(Site, related_name="rules")
    order = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DYNAMIC)
    pool = models.ForeignKey(Pool, null=True, blank=True, on_delete=models.PROTECT, related_name="rules")
    static_address = models.ForeignKey(
        StaticAddress, null=True, blank=True, on_delete=models.PROTECT, related_name="rules"
    )
    blocks = models.ManyToManyField(Block, related_name="rules")

    class Meta:
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
            raise ValidationError("A dynamic rule leases from a pool: choose a pool and no static address.")
        if self.kind == self.Kind.STATIC and (self.static_address_id is None or self.pool_id is not None):
            raise ValidationError("A static rule shows a static address: choose one and no pool.")


class RuleCondition(models.Model):
    """All of a rule's conditions must hold for the rule to match."""

    class Field(models.TextChoices):
        UTM_SOURCE = "utm_source", "utm_source"
        UTM_MEDIUM = "utm_medium", "utm_medium"
        UTM_CAMPAIGN = "utm_campaign", "utm_campaign"
        UTM_TERM = "utm_term", "utm_term"
        UTM_CONTENT = "utm_content", "utm_content"
        REFERRER_DOMAIN = "referrer_domain", "Referrer domain"
        LANDING_URL = "landing_url", "Landing page URL"
        CHANNEL = "channel", "Channel"
        DEVICE_TYPE = "device_type", "Device type"

    class Operator(models.TextChoices):
        EQUALS = "equals", "equals"
        CONTAINS = "contains", "contains"
        MATCHES = "matches", "matches (regular expression)"

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="conditions")
    field = models.CharField(max_length=32, choices=Field.choices)
    operator = models.CharField(max_length=16, choices=Operator.choices, default=Operator.EQUALS)
    value = models.CharField(max_length=REGEX_MAX_LENGTH)
    negate = models.BooleanField(default=False, help_text="Match when the condition does NOT hold.")

    def __str__(self):
        return f"{self.field} {'not ' if self.negate else ''}{self.operator} {self.value!r}"

    def clean(self):
        if self.operator == self.Operator.MATCHES:
            from .conditions import compile_pattern

            try:
                compile_pattern(self.value)
            except ValueError as error:
                raise ValidationError({"value": str(error)}) from error


class Lease(models.Model):
    """An address held by one visitor; history is kept (released leases stay)."""

    class EndReason(models.TextChoices):
        EXPIRED = "expired", "Expired after hold"
        TAKEN_OVER = "taken_over", "Taken over (pool exhausted)"

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="leases")
    address = models.ForeignKey(Address, on_delete=models.CASCADE, related_name="leases")
    visitor = models.ForeignKey(Visitor, on_delete=models.CASCADE, related_name="leases")
    started_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=EndReason.choices, blank=True)
    # A keyed hash of the client IP, for the per-IP abuse cap; never the IP itself.
    ip_hash = models.CharField(max_length=32, blank=True)

    class Meta:
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

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="exhaustions")
    at = models.DateTimeField()
    policy = models.CharField(max_length=16, choices=Pool.ExhaustedPolicy.choices)

    class Meta:
        indexes = [models.Index(fields=["pool", "at"], name="exhaustion_pool_at")]

    def __str__(self):
        return f"{self.pool} exhausted at {self.at:%Y-%m-%d %H:%M}"
