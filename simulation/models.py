from django.db import models
from django.utils.translation import gettext_lazy as _

from substitution.models import Pool


class PoolSimulation(models.Model):
    """The last simulation of a pool on its sites' own traffic: the cached
    result the pool page shows, recomputed by a Celery task once a day."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Being computed")
        READY = "ready", _("Ready")
        NOT_REACHED = "not_reached", _("No size tried reached the target")
        NOT_ENOUGH_TRAFFIC = "not_enough_traffic", _("Not enough traffic to learn from")
        FAILED = "failed", _("Failed")

    pool = models.OneToOneField(Pool, on_delete=models.CASCADE, related_name="simulation", verbose_name=_("pool"))
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.PENDING)
    requested_at = models.DateTimeField(_("requested at"))
    computed_at = models.DateTimeField(_("computed at"), null=True, blank=True)
    target = models.FloatField(_("target"), default=0.995)
    hold_minutes = models.PositiveIntegerField(_("hold minutes"), null=True, blank=True)
    recommended_size = models.PositiveIntegerField(_("recommended size"), null=True, blank=True)
    visitors = models.PositiveIntegerField(_("visitors simulated"), default=0)
    # [{"size", "letters", "correct_visitor", "correct_source", "wrong_source", "unknown", "exhaustions"}, ...]
    curve = models.JSONField(_("curve"), default=list, blank=True)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("pool simulation")
        verbose_name_plural = _("pool simulations")

    def __str__(self):
        return f"{self.pool}: {self.status}"
