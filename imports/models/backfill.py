""" "Reward past actions" runs: one row per run, with what it applied, its progress and its summary."""

from django.db import models
from django.utils.translation import gettext_lazy as _

from loyalty.models import BackgroundJob, JobStatus

__all__ = ["BackfillRange", "BackfillRun", "BackfillStatus"]


# A run moves through the statuses of every batch job.
BackfillStatus = JobStatus


class BackfillRun(BackgroundJob):
    """One run of "Reward past actions": sign-up and order points for what happened before the program started.

    `rules` keeps the ways to earn and point values the run applied (as they were when it was confirmed); its entries
    carry source "backfill" and source_ref = this row's id.
    """

    status = models.CharField(_("status"), max_length=10, choices=BackfillStatus.choices, default=BackfillStatus.QUEUED)
    program_started_at = models.DateTimeField(_("credits actions before"))
    rules = models.JSONField(_("ways to earn applied"), default=list)
    members_credited = models.BigIntegerField(_("members credited (sign-up)"), default=0)
    orders_credited = models.BigIntegerField(_("orders credited"), default=0)
    points_credited = models.BigIntegerField(_("points credited"), default=0)
    already_credited = models.BigIntegerField(_("already credited before"), default=0)
    steps_total = models.PositiveIntegerField(default=0, editable=False)
    steps_done = models.PositiveIntegerField(default=0, editable=False)
    error = models.TextField(_("error"), blank=True)
    undo_reversed = models.BigIntegerField(_("entries reversed by undo"), default=0)

    class Meta:
        verbose_name = _("reward past actions run")
        verbose_name_plural = _("reward past actions runs")
        ordering = ["-created_at", "-id"]
        permissions = [("run_backfill", "Can run and undo Reward past actions")]

    def __str__(self):
        return f"Reward past actions #{self.pk}"

    @property
    def progress(self) -> int:
        """Percent done, for the progress bar."""
        if self.status in (BackfillStatus.DONE, BackfillStatus.UNDONE):
            return 100
        if not self.steps_total:
            return 0
        return min(100, self.steps_done * 100 // self.steps_total)


class BackfillRange(models.Model):
    """One member-id range of a run: a task of its own (any worker takes it), applied in one transaction.

    `done` commits with the range's entries, so a range redelivered or queued twice posts nothing twice and counts
    once; the run's progress and counters are the sums over its done ranges. `attempts` counts the deliveries that
    started it (a range whose worker keeps dying fails the run after settings.JOB_MAX_STARTS)."""

    run = models.ForeignKey(BackfillRun, on_delete=models.CASCADE, related_name="ranges")
    lo = models.BigIntegerField()
    hi = models.BigIntegerField()
    done = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    members_credited = models.BigIntegerField(default=0)
    orders_credited = models.BigIntegerField(default=0)
    points_credited = models.BigIntegerField(default=0)
    already_credited = models.BigIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "lo"], name="backfill_range_once")]
        ordering = ["run", "lo"]

    def __str__(self):
        return f"Reward past actions #{self.run_id}: members {self.lo}-{self.hi}"
