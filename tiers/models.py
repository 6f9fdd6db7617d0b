from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _


class Tier(models.Model):
    """A VIP tier: a member is in the highest tier whose threshold their lifetime points reach."""

    name = models.CharField(_("name"), max_length=80)
    threshold = models.BigIntegerField(_("lifetime points needed"))
    description = models.TextField(_("description"), blank=True)
    retired = models.BooleanField(
        _("retired"),
        default=False,
        editable=False,
        help_text=_("A deleted tier: no member is in it any more, and its history stays readable."),
    )

    class Meta:
        ordering = ["threshold"]
        constraints = [
            models.CheckConstraint(condition=models.Q(threshold__gte=0), name="tier_threshold_not_negative"),
            models.UniqueConstraint(
                fields=["threshold"], condition=models.Q(retired=False), name="tier_threshold_unique"
            ),
            models.UniqueConstraint(fields=["name"], condition=models.Q(retired=False), name="tier_name_unique"),
        ]

    def __str__(self):
        return f"{self.name} (retired)" if self.retired else self.name

    def clean(self):
        """Two tiers in use never share a name or a threshold (a form checks it before the database refuses it)."""
        in_use = Tier.objects.filter(retired=False).exclude(pk=self.pk)
        errors = {}
        if in_use.filter(name=self.name).exists():
            errors["name"] = _("A tier in use already has this name.")
        if self.threshold is not None and in_use.filter(threshold=self.threshold).exists():
            errors["threshold"] = _("A tier in use already starts at this number of points.")
        if errors:
            raise ValidationError(errors)


class TierChange(models.Model):
    """One move of a member between tiers, with the entry that caused it: the answer to "why is she Gold?"."""

    # A backfill writes a tier change for most members it credits, so every index here is paid for in bulk. The
    # (member, created) index serves a member's history and to_tier the history list's filter; the tier a member
    # left and the entry are only looked up through their keys when a tier or an entry is deleted (a tier rarely, and
    # PROTECT refuses it anyway; entries never): no index of their own.
    member = models.ForeignKey("loyalty.Member", on_delete=models.PROTECT, related_name="tier_changes", db_index=False)
    from_tier = models.ForeignKey(
        Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    to_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    lifetime_points = models.BigIntegerField(_("lifetime points after"))
    entry = models.ForeignKey(
        "loyalty.LedgerEntry", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    reason = models.CharField(_("reason"), max_length=255)
    created_at = models.DateTimeField(_("when"), auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["member", "-created_at"], name="tierchange_member_created")]

    def __str__(self):
        return f"{self.from_tier or '-'} -> {self.to_tier or '-'}"
