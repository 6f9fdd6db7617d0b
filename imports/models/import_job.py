"""CSV upload jobs: one row per uploaded file, with its status, counters and the problems found in its rows."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty.models import CHANGE_KIND_CHOICES

__all__ = ["ImportJob", "ImportKind", "ImportRange", "ImportRowProblem", "ImportStatus"]


class ImportKind(models.TextChoices):
    POINTS = "points", _("Point adjustments")
    TOKENS = "tokens", _("Reward tokens")
    MEMBERS = "members", _("Members")
    ORDERS = "orders", _("Orders")


class ImportStatus(models.TextChoices):
    UPLOADED = "uploaded", _("Uploaded")
    CHECKING = "checking", _("Checking")
    CHECKED = "checked", _("Checked: ready to apply")
    APPLYING = "applying", _("Applying")
    APPLIED = "applied", _("Applied")
    FAILED = "failed", _("Failed")
    UNDOING = "undoing", _("Undoing")
    UNDONE = "undone", _("Undone")


class ImportJob(models.Model):
    """One uploaded file: checked in the background (the preview), then applied in chunks, and undoable."""

    kind = models.CharField(_("kind"), max_length=10, choices=ImportKind.choices)
    status = models.CharField(_("status"), max_length=10, choices=ImportStatus.choices, default=ImportStatus.UPLOADED)
    file = models.FileField(_("file"), upload_to="imports/%Y/%m/", max_length=255)
    original_name = models.CharField(_("file name"), max_length=255, blank=True)
    file_size = models.BigIntegerField(_("file size (bytes)"), default=0)
    checksum = models.CharField(_("SHA-256"), max_length=64, db_index=True, editable=False)
    reason = models.CharField(
        _("reason"),
        max_length=500,
        blank=True,
        help_text=_("Shown on every entry the import makes, unless a row gives its own reason."),
    )
    change_kind = models.CharField(
        _("kind of change"), max_length=10, choices=CHANGE_KIND_CHOICES, default="correction"
    )
    counts_toward_lifetime = models.BooleanField(
        _("counts toward lifetime"),
        default=True,
        help_text=_("Whether the file's points move lifetime points, and so the VIP tier."),
    )
    # What the check's simulation of the apply found (the bulk path in dry-run): points in and out, members, tiers.
    preview_totals = models.JSONField(_("preview totals"), default=dict, blank=True)
    total = models.BigIntegerField(_("rows"), default=0)
    to_apply = models.BigIntegerField(_("rows to apply"), default=0)
    already_applied = models.BigIntegerField(_("rows already applied"), default=0)
    problems = models.BigIntegerField(_("rows with problems"), default=0)
    applied = models.BigIntegerField(_("rows applied"), default=0)
    skipped = models.BigIntegerField(_("rows skipped"), default=0)
    failed = models.BigIntegerField(_("rows failed"), default=0)
    points_credited = models.BigIntegerField(_("points credited"), default=0)
    points_debited = models.BigIntegerField(_("points debited"), default=0)
    members_touched = models.BigIntegerField(_("members touched"), default=0)
    progress = models.BigIntegerField(_("rows done"), default=0)
    # The last file row whose chunk committed: a redelivered apply resumes after it.
    applied_through_row = models.BigIntegerField(default=0, editable=False)
    first_problems = models.JSONField(_("first problems"), default=list, blank=True)
    error = models.TextField(_("error"), blank=True, help_text=_("Why the whole file was refused, if it was."))
    error_file = models.FileField(_("error file"), upload_to="imports/errors/%Y/%m/", max_length=255, blank=True)
    undo_reversed = models.BigIntegerField(_("entries reversed by undo"), default=0)
    undo_refused = models.BigIntegerField(_("entries undo could not reverse"), default=0)
    undo_report = models.JSONField(_("undo report"), default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("uploaded by"),
    )
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("applied by"),
    )
    created_at = models.DateTimeField(_("uploaded at"), default=timezone.now)
    checked_at = models.DateTimeField(_("checked at"), null=True, blank=True)
    started_at = models.DateTimeField(_("apply started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("apply finished at"), null=True, blank=True)
    undone_at = models.DateTimeField(_("undone at"), null=True, blank=True)
    undo_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    undo_reason = models.CharField(_("undo reason"), max_length=500, blank=True)
    # Set when an undo is asked for: a failed job resumes its undo, never its apply, once this is set.
    undo_started_at = models.DateTimeField(_("undo started"), null=True, blank=True, editable=False)
    # See loyalty.models.BackgroundJob: the task's heartbeat and its unfinished starts.
    heartbeat_at = models.DateTimeField(_("last sign of its task"), null=True, blank=True, editable=False)
    task_starts = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        verbose_name = _("CSV import")
        verbose_name_plural = _("CSV imports")
        ordering = ["-created_at", "-id"]
        permissions = [
            ("apply_importjob", "Can apply an import"),
            ("undo_importjob", "Can undo an import"),
        ]
        indexes = [models.Index(fields=["status"], name="importjob_status")]

    def __str__(self):
        return f"#{self.pk} {self.get_kind_display()}: {self.original_name}"

    @property
    def previous_upload(self):
        """The latest earlier job with the very same file, if any ("uploaded before as job N").

        Only an earlier job: the first upload's page must not say it was uploaded before as a later one.
        """
        if not self.checksum or self.pk is None:
            return None
        return ImportJob.objects.filter(checksum=self.checksum, pk__lt=self.pk).order_by("-pk").first()

    @property
    def later_uploads(self) -> list:
        """The jobs that uploaded the very same file again after this one, oldest first ("uploaded again as job N")."""
        if not self.checksum or self.pk is None:
            return []
        return list(ImportJob.objects.filter(checksum=self.checksum, pk__gt=self.pk).order_by("pk")[:10])

    @property
    def percent(self) -> int:
        if self.status in (ImportStatus.APPLIED, ImportStatus.UNDONE):
            return 100
        if not self.total:
            return 0
        return min(100, int(self.progress * 100 / self.total))

    @property
    def rows_table(self) -> str:
        """The job's own staging table of parsed rows, kept between the check and the apply."""
        return f"imports_job_rows_{int(self.pk)}"

    @property
    def ready_table(self) -> str:
        """The job's checked rows, kept in a table of its own while its member ranges apply (any worker reads it)."""
        return f"import_ready_{int(self.pk)}"

    @property
    def has_applied_rows(self) -> bool:
        """Whether some of the job's rows are applied: a chunk committed, or a member range is done."""
        return self.applied_through_row > 0 or self.ranges.filter(done=True).exists()


class ImportRange(models.Model):
    """One member-id range of a big job's checked rows (lo..hi inclusive): a task of its own (any worker takes it),
    applied in one transaction, its members' rows in file order.

    `done` commits with the range's entries, so a range redelivered or queued twice posts nothing twice and counts
    once; the job's counters and progress are the sums over its done ranges. `rows` is the number of checked rows
    without a problem in the range when the job was split (the range checks it still finds them). `attempts` counts
    the deliveries that started it (a range whose worker keeps dying fails the job after settings.JOB_MAX_STARTS)."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="ranges")
    lo = models.BigIntegerField()
    hi = models.BigIntegerField()
    done = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    rows = models.BigIntegerField(default=0)
    applied = models.BigIntegerField(default=0)
    skipped = models.BigIntegerField(default=0)
    points_credited = models.BigIntegerField(default=0)
    points_debited = models.BigIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "lo"], name="import_range_once")]
        ordering = ["job", "lo"]

    def __str__(self):
        return f"CSV import #{self.job_id}: members {self.lo}-{self.hi}"


class ImportRowProblem(models.Model):
    """A row of an upload that cannot apply, with the reason a merchant reads (feeds the error file)."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="row_problems")
    row_number = models.BigIntegerField(_("row"))
    column_name = models.CharField(_("column"), max_length=50, blank=True)
    reason = models.CharField(_("reason"), max_length=500)
    # "check": found by checking the file; "apply": refused by the ledger while applying.
    phase = models.CharField(max_length=10, default="check")

    class Meta:
        ordering = ["job", "row_number"]
        indexes = [models.Index(fields=["job", "row_number"], name="importrowproblem_job_row")]

    def __str__(self):
        return f"row {self.row_number}: {self.reason}"
