import re

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from projects.models import Project
from tracker.models import Site, Visitor

BLOCK_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]*$")


class Pool(models.Model):
    """Addresses leased one visitor at a time."""

    class Kind(models.TextChoices):
        PLUS = "plus", "Generated plus-addresses (local+token@domain)"
        DASH = "dash", "Generated catch-all addresses (local-token@domain)"

    class ExhaustedPolicy(models.TextChoices):
        ORIGINAL = "original", "Show the site's original address"
        TAKE_OVER = "take_over", "Take over the least recently active lease"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pools")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.PLUS)
    base_email = models.EmailField(
        help_text="The real inbox, e.g. info@example.com; tokens are added to its local part."
    )
    size = models.PositiveIntegerField(default=20)
    hold_minutes = models.PositiveIntegerField(
        default=30, help_text="How long an address stays with a visitor after their last activity."
    )
    exhausted_policy = models.CharField(
        max_length=16, choices=ExhaustedPolicy.choices, default=ExhaustedPolicy.ORIGINAL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Address(models.Model):
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="addresses")
    email = models.EmailField(unique=True)
    token = models.CharField(max_length=32, blank=True)
    active = models.BooleanField(default=True)
    # When its last lease ended: allocation takes the address free longest (LRU).
    last_released_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pool", "token"], name="address_unique_token")]
        indexes = [models.Index(fields=["pool", "last_released_at"], name="address_pool_lru")]

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


class Rule(models.Model):
    """First matching active rule (by order) decides what a visitor is shown."""

    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", "Dynamic: lease an address from a pool"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rules")
    name = models.CharField(max_length=200)
    sites = models.ManyToManyField(Site, related_name="rules")
    order = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DYNAMIC)
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="rules")
    blocks = models.ManyToManyField(Block, related_name="rules")

    class Meta:
        ordering = ["order", "id"]

    def __str__(self):
        return self.name


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
