"""CSV upload jobs: create, check (the preview), apply in chunks or member ranges, undo. Called by the admin, the
tasks and import_csv.

The parsed rows live in the job's own table (imports_job_rows_<id>, UNLOGGED on PostgreSQL) from the check until the
apply ends, so applying does not parse the file again. Every apply re-checks the rows against the database (members
may have changed since the preview), then applies them chunk by chunk; each chunk commits with the job's counters and
the last row it covered, so a redelivered task resumes after it, and the rows' idempotency keys make a repeat harmless.

A big job (more than settings.IMPORT_RANGE_ROWS rows) of a kind whose every applying row has its member when checked
(points, tokens: Kind.splittable) is split instead into member ranges (ImportRange), as Reward past actions runs are:
its checked rows go to a table of the job's own (import_ready_<id>) that any worker reads, each range is a Celery
task of its own (imports.import_range) applying its members' rows in file order in one transaction, the job's
counters are the sums over its done ranges, and the range that completes the job queues its final step
(imports.import_close).
"""

import hashlib
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty.actors import SystemActor
from loyalty.background import range_delivery_counted
from loyalty.models import EntryKind, EntrySource, EntryStatus, LedgerEntry
from loyalty.profiling import add as profile_add
from loyalty.profiling import profiling, step
from loyalty.queueing import queue_task
from loyalty.services.staff import daily_total_holds, staff_policy
from loyalty.services.tables import fill_table
from loyalty.timezones import store_timezone_held

from ..models import ImportJob, ImportKind, ImportRange, ImportRowProblem, ImportStatus
from . import sql
from .errors_file import write_error_file
from .kinds import KINDS, READY, Context
from .parsing import ImportFileError, open_table

log = logging.getLogger(__name__)

FIRST_PROBLEMS = 20
CHECKABLE = (ImportStatus.UPLOADED, ImportStatus.CHECKING, ImportStatus.CHECKED, ImportStatus.FAILED)
# Statuses in which a task is (or should be) working on the job; the sweep and Resume look at these.
IN_FLIGHT = (ImportStatus.UPLOADED, ImportStatus.CHECKING, ImportStatus.APPLYING, ImportStatus.UNDOING)


class ImportJobError(Exception):
    """An import action that is refused, with a message a program manager can read."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


def chunk_rows() -> int:
    """Rows applied per transaction (setting IMPORT_CHUNK_ROWS). Our memory stays flat whatever the size (the work
    is set-based in the database); a bigger chunk locks and rewrites each member fewer times (measured on 1,000,000
    rows over 200,000 members: apply 147 s with 100,000-row chunks, 114 s with 500,000), a smaller one shows
    progress more often."""
    return getattr(settings, "IMPORT_CHUNK_ROWS", 100_000)


def range_rows() -> int:
    """Above this many rows (setting IMPORT_RANGE_ROWS), a splittable job applies in member ranges of about this many
    rows each, one Celery task and one transaction per range."""
    return int(getattr(settings, "IMPORT_RANGE_ROWS", 200_000))


def max_upload_bytes() -> int:
    return settings.IMPORT_MAX_UPLOAD_MB * 1024 * 1024


def import_job_create(
    *,
    kind: str,
    upload,
    reason: str = "",
    actor=None,
    name: str = "",
    change_kind: str = "correction",
    counts_toward_lifetime: bool | None = None,
) -> ImportJob:
    """Store an upload (a Django File or UploadedFile) as a new job; the file is streamed, never read whole.

    change_kind / counts_toward_lifetime: whether a points file's adjustments move lifetime (None: the program's
    default for the kind of change)."""
    from loyalty.services.previews import lifetime_choice

    if kind not in ImportKind.values:
        raise ImportJobError(
            _("Unknown kind of file “%(kind)s”: use points, tokens, members or orders.") % {"kind": kind}
        )
    size = upload.size
    if size > max_upload_bytes():
        raise ImportJobError(
            _("The file is %(size)s MB; the largest file accepted is %(max)s MB. Split it into smaller files.")
            % {"size": f"{size / 1024 / 1024:.1f}", "max": settings.IMPORT_MAX_UPLOAD_MB}
        )
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    name = name or getattr(upload, "name", "") or "upload.csv"
    job = ImportJob(
        kind=kind,
        reason=(reason or "").strip()[:500],
        original_name=name.rsplit("/", 1)[-1][:255],
        file_size=size,
        checksum=digest.hexdigest(),
        change_kind=change_kind,
        counts_toward_lifetime=lifetime_choice(change_kind, counts_toward_lifetime),
        created_by=None if actor is None or isinstance(actor, SystemActor) else actor,
    )
    job.file.save(job.original_name, upload, save=False)
    job.save()
    return job


def import_job_submit(*, kind: str, upload, reason: str = "", actor=None, name: str = "", **lifetime) -> ImportJob:
    """Store an upload and queue its check, together: the check is queued only once the job is committed."""
    with transaction.atomic():
        job = import_job_create(kind=kind, upload=upload, reason=reason, actor=actor, name=name, **lifetime)
        transaction.on_commit(lambda: _queue("check_import_job", job.pk))
    return job


def _queue(task_name: str, job_id: int) -> None:
    queue_task(f"imports.{task_name}", job_id)


def _context(job: ImportJob) -> Context:
    # The entries name who applied the file (else who uploaded it); the ledger holds either to their role.
    actor = job.applied_by or job.created_by or SystemActor(f"CSV import #{job.pk}")
    return Context(
        job_id=job.pk,
        checksum=job.checksum,
        reason=job.reason or _("CSV import #%(id)s") % {"id": job.pk},
        upload_reason=job.reason,
        actor=actor,
        counts_toward_lifetime=job.counts_toward_lifetime,
    )


# ---------------------------------------------------------------------------------------------------------------
# Check (the preview)


def import_job_check(*, job_id: int) -> ImportJob:
    """Parse and check the whole file; nothing is applied. The job then shows the preview, or why the file failed."""
    if not ImportJob.objects.filter(pk=job_id, status__in=CHECKABLE).update(status=ImportStatus.CHECKING, error=""):
        return ImportJob.objects.get(pk=job_id)
    job = ImportJob.objects.get(pk=job_id)
    kind = KINDS[job.kind]
    try:
        with step("parse"):
            _parse_into_rows_table(job, kind)
    except ImportFileError as exc:
        return _fail(job, str(exc))
    if not sql.one(f"SELECT COUNT(*) FROM {job.rows_table}"):
        return _fail(job, _("The file has no rows under its first row (the column names): there is nothing to import."))
    ctx = _context(job)
    with step("check"):
        counts = _resolve(job, kind, ctx)
        totals = {}
        if hasattr(kind, "simulate"):
            counts, totals = _simulate(job, kind, ctx, counts)
    ImportJob.objects.filter(pk=job.pk).update(
        **counts,
        preview_totals=totals,
        progress=0,
        first_problems=_first_problems(job),
        status=ImportStatus.CHECKED,
        checked_at=timezone.now(),
    )
    sql.drop_table(READY)
    job.refresh_from_db()
    write_error_file(job)
    return job


def _simulate(job: ImportJob, kind, ctx: Context, counts: dict) -> tuple[dict, dict]:
    """Run the apply in dry-run (the ledger's bulk path over every row without a problem, in file order, as the
    apply's actor with the program's policy and limits): the rows it refuses become the check's problems, and the
    counts are the ones the apply will give. Returns (counts, totals for the job page)."""
    preview = kind.simulate(ctx)
    totals = preview.totals()
    if preview.refusal:
        # The uploader may not apply imports: simulate as the system (no staff limits) and say so; whoever applies
        # it is held to their own limits row by row.
        totals = kind.simulate(_context_as_system(job, ctx)).totals() | {"note": preview.refusal}
        preview = None
    refused = preview.result.refused if preview else []
    if refused:
        ImportRowProblem.objects.bulk_create(
            [
                ImportRowProblem(job=job, row_number=row, column_name="", reason=reason[:500], phase="check")
                for row, reason in refused
            ],
            batch_size=5000,
        )
    counts = {
        **counts,
        "problems": counts["problems"] + totals["refused"],
        "already_applied": totals["already_applied"] + totals["nothing_to_do"],
        "to_apply": totals["posted"],
    }
    return counts, totals


def _context_as_system(job: ImportJob, ctx: Context) -> Context:
    from dataclasses import replace

    return replace(ctx, actor=SystemActor(f"CSV import #{job.pk}"))


def _parse_into_rows_table(job: ImportJob, kind) -> None:
    """Stream the stored file into the job's rows table (COPY on PostgreSQL), all or nothing."""
    ctx = _context(job)
    with transaction.atomic():
        sql.create_table(job.rows_table, kind.stage, temp=False)
        with open_table(job.file.path) as table:
            index = table.column_index()
            kind.check_header(index, table.repeated_columns())
            columns = tuple(c for c, _t in kind.stage)
            rows = kind.normalise(table, index, ctx)
            # Dates without an offset are the store's time; the zone is read now, not while the rows stream in.
            with store_timezone_held():
                if kind.rows_without_empty_strings:
                    sql.load_rows(job.rows_table, columns, rows)
                else:
                    fill_table(job.rows_table, columns, rows)


def _resolve(job: ImportJob, kind, ctx: Context, *, preview: bool = True) -> dict:
    """Check the parsed rows against the database (the ready table) and record their problems."""
    with transaction.atomic():
        sql.tune_transaction()
        kind.resolve(ctx)
        return _record_check_problems(job, kind, ctx, preview=preview)


def _record_check_problems(job: ImportJob, kind, ctx: Context, *, preview: bool = True) -> dict:
    """Store the check's row problems and return the preview's counts (the apply needs no "already applied")."""
    with transaction.atomic():
        ImportRowProblem.objects.filter(job=job, phase="check").delete()
        sql.execute(
            f"""INSERT INTO imports_importrowproblem (job_id, row_number, column_name, reason, phase)
                SELECT %s, row_no, COALESCE(problem_column, ''), SUBSTR(problem, 1, 500), 'check'
                FROM {ctx.ready} WHERE problem IS NOT NULL ORDER BY row_no""",
            [job.pk],
        )
    total, problems, already = sql.rows(
        f"""SELECT COUNT(*), COALESCE(SUM(CASE WHEN problem IS NOT NULL THEN 1 ELSE 0 END), 0),
                   COALESCE(SUM(CASE WHEN problem IS NULL AND {kind.already_applied_sql(ctx) if preview else "1 = 0"}
                                THEN 1 ELSE 0 END), 0)
            FROM {ctx.ready} x"""
    )[0]
    return {
        "total": total,
        "problems": problems,
        "already_applied": already,
        "to_apply": total - problems - already,
    }


def _first_problems(job: ImportJob) -> list[dict]:
    return [
        {"row": p.row_number, "column": p.column_name, "reason": p.reason}
        for p in ImportRowProblem.objects.filter(job=job).order_by("row_number", "pk")[:FIRST_PROBLEMS]
    ]


def _fail(job: ImportJob, message: str) -> ImportJob:
    sql.drop_table(job.rows_table)
    sql.drop_table(job.ready_table)
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.FAILED, error=message, finished_at=timezone.now())
    job.refresh_from_db()
    return job


# ---------------------------------------------------------------------------------------------------------------
# Apply


def import_job_start_apply(*, job: ImportJob, actor=None) -> bool:
    """Mark a checked job as applying (the Apply button); False when it is not ready to apply.

    A staff `actor` needs the permission to apply imports (loyalty.services.staff raises StaffRefused) and becomes
    the entries' actor, held to their role's limits row by row.
    """
    if actor is not None:
        with transaction.atomic():
            staff_policy(actor, "import")
    if job.status == ImportStatus.APPLYING:
        return True
    by = {} if actor is None or isinstance(actor, SystemActor) else {"applied_by": actor}
    return bool(
        ImportJob.objects.filter(pk=job.pk, status=ImportStatus.CHECKED).update(
            status=ImportStatus.APPLYING, started_at=timezone.now(), **by
        )
    )


def import_job_apply(*, job_id: int, spread: bool = False) -> ImportJob:
    """Apply a checked job in chunks, or a big one in member ranges; safe to run again (a redelivered task, "Resume")
    at any point.

    A job of a splittable kind with more than settings.IMPORT_RANGE_ROWS rows (and none applied in chunks yet) is
    split into member ranges (_apply_ranges): spread=True (the job's Celery task) queues one task per range not done,
    spread=False applies them here, one after another, and finishes the job (import_csv, the bench, the tests).
    """
    job = ImportJob.objects.get(pk=job_id)
    if job.status == ImportStatus.CHECKED:
        import_job_start_apply(job=job)
        job.refresh_from_db()
    if job.status != ImportStatus.APPLYING:
        return job
    kind = KINDS[job.kind]
    ctx = _context(job)
    if job.ranges.exists() or _splits(job, kind, ctx):
        return _apply_ranges(job, kind, ctx, spread=spread)
    try:
        if _rows_table_lost(job):
            with step("parse"):
                _parse_into_rows_table(job, kind)
        with step("check"):
            counts = _resolve(job, kind, ctx, preview=False)
        # The preview keeps counting the rows its simulation refused among the problems (the apply refuses them again).
        refused = (job.preview_totals or {}).get("refused", 0)
        ImportJob.objects.filter(pk=job.pk).update(problems=counts["problems"] + refused, total=counts["total"])
        _apply_chunks(job, kind, ctx)
    except ImportFileError as exc:
        return _fail(job, str(exc))
    with step("finish"):
        _finish(job, kind)
    job.refresh_from_db()
    return job


def _rows_table_lost(job: ImportJob) -> bool:
    """Whether the job's parsed rows must be parsed again from its stored file: their table is gone, or empty (a
    checked file has rows, and PostgreSQL brings an UNLOGGED table back empty when it recovers from a crash)."""
    return not sql.table_exists(job.rows_table) or not sql.one(f"SELECT EXISTS (SELECT 1 FROM {job.rows_table})")


def _apply_chunks(job: ImportJob, kind, ctx: Context) -> None:
    size = chunk_rows()
    last_hi, clean = None, False
    while True:
        bounds = time.perf_counter()
        with transaction.atomic():
            # The job's row lock makes a second worker on the same job wait, then continue after this chunk.
            locked = ImportJob.objects.select_for_update().get(pk=job.pk)
            if locked.status != ImportStatus.APPLYING:
                return
            sql.tune_transaction()
            lo = locked.applied_through_row
            hi = _chunk_end(lo, size)
            if hi is None:
                return
            rows_in_chunk = sql.one(f"SELECT COUNT(*) FROM {READY} WHERE row_no > %s AND row_no <= %s", [lo, hi])
            # Then the chunk's own row keys need no lookup on the ledger (its references still do).
            clean = _run_clean_so_far(locked, last_hi, clean)
            ctx.file_keys_new = clean and not _same_file_started_elsewhere(locked)
            profile_add("progress", time.perf_counter() - bounds)
            result = kind.apply_chunk(ctx, lo, hi)
            counters = time.perf_counter()
            ImportJob.objects.filter(pk=job.pk).update(
                applied=F("applied") + result.applied,
                skipped=F("skipped") + result.skipped,
                points_credited=F("points_credited") + result.points_credited,
                points_debited=F("points_debited") + result.points_debited,
                progress=F("progress") + rows_in_chunk,
                applied_through_row=hi,
            )
            committing = time.perf_counter()
            profile_add("progress", committing - counters)
        if profiling():
            profile_add("checks", time.perf_counter() - committing)  # the chunk's commit: deferred checks, flush
        last_hi = hi


def _run_clean_so_far(locked: ImportJob, last_hi: int | None, clean: bool) -> bool:
    """Whether nothing of this job past its last committed chunk can be on the ledger. Each chunk commits with
    applied_through_row, so that holds if this run started first (nothing committed, no entry of the job on the
    ledger) and every chunk since was this run's own. A resumed or redelivered run, or another worker in between,
    makes it False for the rest of the run."""
    if last_hi is None:
        return locked.applied_through_row == 0 and not (
            LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=locked.pk).exists()
        )
    return clean and locked.applied_through_row == last_hi


def _same_file_started_elsewhere(locked: ImportJob) -> bool:
    """Another upload of the very same file has started applying: it may have posted this file's row keys."""
    return ImportJob.objects.filter(checksum=locked.checksum, started_at__isnull=False).exclude(pk=locked.pk).exists()


def _chunk_end(lo: int, size: int) -> int | None:
    end = sql.one(f"SELECT row_no FROM {READY} WHERE row_no > %s ORDER BY row_no LIMIT 1 OFFSET %s", [lo, size - 1])
    if end is None:
        end = sql.one(f"SELECT MAX(row_no) FROM {READY} WHERE row_no > %s", [lo])
    return end


# ---------------------------------------------------------------------------------------------------------------
# Apply in member ranges (a big job of a splittable kind)


def _splits(job: ImportJob, kind, ctx: Context) -> bool:
    """A big job of a splittable kind splits, unless a chunk has applied already or its actor is held to a daily
    total: the ranges run in member order, in parallel, and the total would refuse other rows than the file's order
    (and the preview) does."""
    if not (kind.splittable and job.applied_through_row == 0 and job.total > range_rows()):
        return False
    return not daily_total_holds(ctx.actor)


def _apply_ranges(job: ImportJob, kind, ctx: Context, *, spread: bool) -> ImportJob:
    """Split the job into member ranges once (its first run), then apply the ranges not done: queued one task each
    (spread) or here, one after another. A redelivered or resumed run keeps the ranges done and the rows as they were
    checked when the job was split (each range was made from them), and queues the others again; a range queued twice
    posts nothing twice (its row lock and its `done` mark, committed with its entries, and the rows' keys)."""
    try:
        if not job.ranges.exists():
            # Under the job's row lock: a second apply task on the job (Apply pressed twice, a redelivery) waits
            # here, then finds the ranges made and splits nothing. Without it, its check would drop and make the
            # job's ready table again under the ranges already running, then fail the job on their unique key.
            with transaction.atomic():
                locked = ImportJob.objects.select_for_update().get(pk=job.pk)
                if locked.status == ImportStatus.APPLYING and not locked.ranges.exists():
                    if _rows_table_lost(job):
                        with step("parse"):
                            _parse_into_rows_table(job, kind)
                    with step("check"):
                        _split(job, kind, ctx)
    except ImportFileError as exc:
        return _fail(job, str(exc))
    job.refresh_from_db()
    if job.status != ImportStatus.APPLYING:
        return job
    # The ranges keep their count of deliveries: only a person's Resume starts it again (import_ranges_restart), so a
    # range whose worker keeps dying fails the job however often the sweep queues the job again.
    pending = list(job.ranges.filter(done=False).order_by("lo").values_list("pk", flat=True))
    if not pending:
        # Every range is done (its final step did not run), or no row applies (every one has a problem): finish here.
        return import_job_close(job_id=job.pk)
    if spread:
        for range_id in pending:
            queue_task("imports.import_range", range_id)
        job.refresh_from_db()
        return job
    for range_id in pending:
        import_range_apply(range_id=range_id)
    return import_job_close(job_id=job.pk)


def _split(job: ImportJob, kind, ctx: Context) -> None:
    """Check the rows into the job's own ready table and cut it into member ranges of about IMPORT_RANGE_ROWS rows
    (a member's rows all in one range), all in one transaction: the table, the check's problems, the job's counts and
    its ranges exist together or not at all."""
    ctx.ready = job.ready_table
    with transaction.atomic():
        counts = _resolve(job, kind, ctx, preview=False)
        # The ranges read their members' rows by member, in file order.
        sql.execute(f"CREATE INDEX {ctx.ready}_member ON {ctx.ready} (member_id, row_no)")
        if sql.is_postgres():
            sql.execute(f"ANALYZE {ctx.ready}")
        refused = (job.preview_totals or {}).get("refused", 0)
        ImportJob.objects.filter(pk=job.pk).update(problems=counts["problems"] + refused, total=counts["total"])
        spans = _member_spans(ctx.ready, range_rows())
        applying = sql.one(f"SELECT COUNT(*) FROM {ctx.ready} WHERE problem IS NULL")
        if sum(rows for _lo, _hi, rows in spans) != applying:
            # Kind.splittable promises every row without a problem has its member: one without would be lost.
            raise RuntimeError(f"{kind.name} rows without a member cannot be applied in member ranges")
        ImportRange.objects.bulk_create([ImportRange(job=job, lo=lo, hi=hi, rows=rows) for lo, hi, rows in spans])


def _member_spans(ready: str, size: int) -> list[tuple[int, int, int]]:
    """(first member id, last member id, rows) of consecutive members holding about `size` rows without a problem:
    a member goes to the range in which its first row falls, so a range holds at most `size` rows plus one member's."""
    return [
        (int(lo), int(hi), int(rows))
        for lo, hi, rows in sql.rows(
            f"""SELECT MIN(member_id), MAX(member_id), SUM(n) FROM (
                    SELECT member_id, n, CAST(SUM(n) OVER (ORDER BY member_id) AS bigint) - n AS rows_before
                    FROM (SELECT member_id, COUNT(*) AS n FROM {ready} WHERE problem IS NULL GROUP BY member_id) m
                ) s
                GROUP BY rows_before / {int(size)} ORDER BY MIN(member_id)"""
        )
    ]


def import_range_start(*, range_id: int) -> bool:
    """Count a delivery of the range (committed at once, so a worker killed mid-range leaves its mark). False when
    the range has been delivered more than settings.JOB_MAX_STARTS times: the job then fails with that reason."""
    return range_delivery_counted(ImportRange, range_id)


def import_range_apply(*, range_id: int) -> str:
    """Apply one member range in one transaction, its members' rows in file order through the kind's apply_chunk:
    "done" (this call applied it), "last" (and it was the job's last range not done), "skipped" (already done, or the
    job is no longer applying: failed, undoing). ImportJobError when the range's checked rows are gone (an UNLOGGED
    table after a database crash): the job then fails and Undo reverses what its other ranges applied."""
    own_transaction = not connection.in_atomic_block
    with transaction.atomic():
        # A second delivery of the same range waits here for the first to commit, then finds it done.
        span = ImportRange.objects.select_for_update().filter(pk=range_id).first()
        if span is None or span.done:
            return "skipped"
        job = ImportJob.objects.select_related("applied_by", "created_by").get(pk=span.job_id)
        if job.status != ImportStatus.APPLYING:
            return "skipped"
        kind = KINDS[job.kind]
        ctx = _context(job)
        ctx.ready = job.ready_table
        sql.tune_transaction()
        members = (span.lo, span.hi)
        if not sql.table_exists(ctx.ready) or span.rows != sql.one(
            f"SELECT COUNT(*) FROM {ctx.ready} WHERE problem IS NULL AND member_id BETWEEN %s AND %s", members
        ):
            raise ImportJobError(
                _(
                    "the checked rows of members %(lo)s to %(hi)s are gone (the database restarted while the import "
                    "was applying): undo the import and upload the file again"
                )
                % {"lo": span.lo, "hi": span.hi}
            )
        # Nothing of a range not done is on the ledger (its entries commit with its mark): only another upload of
        # the same file can have posted its rows' own keys.
        ctx.file_keys_new = not _same_file_started_elsewhere(job)
        last_row = sql.one(f"SELECT COALESCE(MAX(row_no), 0) FROM {ctx.ready}")
        result = kind.apply_chunk(ctx, 0, last_row, members=members)
        if own_transaction and sql.is_postgres():
            with step("checks"):
                sql.check_constraints_now()
        with step("progress"):
            ImportRange.objects.filter(pk=span.pk).update(
                done=True,
                finished_at=timezone.now(),
                applied=result.applied,
                skipped=result.skipped,
                points_credited=result.points_credited,
                points_debited=result.points_debited,
            )
            # The ranges meet last on the job's row: one at a time, each sums the done ranges, so exactly one of them
            # sees none left and queues the final step. An undo asked for meanwhile (a failed job) has moved the job
            # on under this lock: the range then commits nothing, so the undo sees every entry it has to reverse.
            status = ImportJob.objects.select_for_update().filter(pk=job.pk).values_list("status", flat=True).first()
            if status != ImportStatus.APPLYING:
                transaction.set_rollback(True)
                return "skipped"
            progress = _range_progress(job)
            ImportJob.objects.filter(pk=job.pk).update(**progress.counters)
    return "last" if progress.all_done else "done"


@dataclass
class RangeProgress:
    counters: dict
    all_done: bool


def _range_progress(job: ImportJob) -> RangeProgress:
    """The job's counters and progress: the sums over its done ranges."""
    done = Q(done=True)
    sums = job.ranges.aggregate(
        n_total=Count("pk"),
        n_done=Count("pk", filter=done),
        applied=Sum("applied", filter=done),
        skipped=Sum("skipped", filter=done),
        points_credited=Sum("points_credited", filter=done),
        points_debited=Sum("points_debited", filter=done),
        progress=Sum("rows", filter=done),
    )
    counters = {name: sums[name] or 0 for name in ("applied", "skipped", "points_credited", "points_debited")}
    return RangeProgress(counters | {"progress": sums["progress"] or 0}, sums["n_done"] == sums["n_total"])


def import_job_close(*, job_id: int) -> ImportJob:
    """A split job's final step, once every range is done (safe to run twice): the job's summary, its error file,
    and its tables dropped (_finish)."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.status == ImportStatus.APPLYING and not job.ranges.filter(done=False).exists():
            ImportJob.objects.filter(pk=job.pk).update(**_range_progress(job).counters)
            with step("finish"):
                _finish(job, KINDS[job.kind])
    job.refresh_from_db()
    return job


def _finish(job: ImportJob, kind) -> None:
    job.refresh_from_db()
    if kind.name in (ImportKind.POINTS, ImportKind.TOKENS):
        touched = (
            LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk)
            .exclude(kind=EntryKind.REVERSAL)
            .values("member_id")
            .distinct()
            .count()
        )
    elif kind.name == ImportKind.MEMBERS:
        touched = job.applied
    else:
        touched = sql.one(f"SELECT COUNT(DISTINCT member_id) FROM {READY} WHERE problem IS NULL") or 0
    failed = ImportRowProblem.objects.filter(job=job).count()
    ImportJob.objects.filter(pk=job.pk, status=ImportStatus.APPLYING).update(
        status=ImportStatus.APPLIED,
        failed=failed,
        members_touched=touched,
        progress=job.total,
        finished_at=timezone.now(),
        first_problems=_first_problems(job),
    )
    sql.drop_table(READY)
    sql.drop_table(job.ready_table)
    sql.drop_table(job.rows_table)
    job.refresh_from_db()
    write_error_file(job)


def import_job_fail(*, job_id: int, message: str) -> None:
    """Record an unexpected stop of a task (checking, applying or undoing); rows applied so far stay applied,
    "Resume" applies the rest and "Undo" reverses what was applied."""
    ImportJob.objects.filter(pk=job_id, status__in=IN_FLIGHT).update(
        status=ImportStatus.FAILED, error=message[:2000], finished_at=timezone.now()
    )


def import_job_resume(*, job: ImportJob) -> bool:
    """Make a stopped apply (stuck in applying after a crash, or failed after its check) ready to run again."""
    if job.status == ImportStatus.APPLYING:
        import_ranges_restart(job_id=job.pk)
        return True
    if job.status == ImportStatus.FAILED and job.checked_at and not job.undo_started_at:
        resumed = ImportJob.objects.filter(pk=job.pk, status=ImportStatus.FAILED).update(
            status=ImportStatus.APPLYING, error="", task_starts=0, started_at=job.started_at or timezone.now()
        )
        if resumed:
            import_ranges_restart(job_id=job.pk)
        return bool(resumed)
    return False


def import_ranges_restart(*, job_id: int) -> None:
    """A person's Resume: the job's ranges not done start their count of deliveries again (those counted were
    against workers that died). The sweep and a redelivered apply keep the count, so a range whose worker keeps
    dying fails the job after settings.JOB_MAX_STARTS deliveries however often the job is queued again."""
    ImportRange.objects.filter(job_id=job_id, done=False).update(attempts=0)


def import_job_request_apply(*, job: ImportJob, resume: bool = False, actor=None) -> bool:
    """Apply (or resume) a job: its status moves and its task is queued together, once the move commits.

    A process killed between the two leaves the job applying with no task: the sweep (stuck_jobs.py) and the job
    page's Resume queue it again. False when the job is not in a state to apply.
    """
    with transaction.atomic():
        started = import_job_resume(job=job) if resume else import_job_start_apply(job=job, actor=actor)
        if started:
            transaction.on_commit(lambda: _queue("apply_import_job", job.pk))
    return started


# ---------------------------------------------------------------------------------------------------------------
# Undo


def import_job_start_undo(*, job: ImportJob, actor=None, reason: str = "") -> None:
    """Move an applied job (or one whose apply or undo failed after applying rows) to undoing, keeping who asked
    and why for the entries' reason; ImportJobError when it cannot be undone. A staff `actor` needs the permission
    to undo imports (loyalty.services.staff raises StaffRefused)."""
    if actor is not None:
        with transaction.atomic():
            staff_policy(actor, "import_undo")
    if not KINDS[job.kind].undoable:
        raise ImportJobError(
            _(
                "A %(kind)s import changes records, not points, so it cannot be undone here: "
                "correct the records and upload them again."
            )
            % {"kind": job.get_kind_display().lower()}
        )
    if job.status == ImportStatus.UNDOING:
        return
    # A failed job is undoable once some of its rows applied: a chunk committed, or a member range is done.
    undoable = ImportJob.objects.filter(pk=job.pk).filter(
        Q(status=ImportStatus.APPLIED)
        | Q(status=ImportStatus.FAILED, applied_through_row__gt=0)
        | Q(status=ImportStatus.FAILED, pk__in=ImportRange.objects.filter(done=True).values("job_id"))
    )
    if not undoable.update(
        status=ImportStatus.UNDOING,
        error="",
        task_starts=0,
        undo_started_at=timezone.now(),
        undo_requested_by=None if actor is None or isinstance(actor, SystemActor) else actor,
        undo_reason=(reason or "")[:500],
    ):
        raise ImportJobError(
            _("Only an applied import can be undone; this one is %(status)s.") % {"status": job.status}
        )


def import_job_request_undo(*, job: ImportJob, actor=None, reason: str = "") -> None:
    """Undo a job in the background: its status moves and its task is queued together."""
    with transaction.atomic():
        import_job_start_undo(job=job, actor=actor, reason=reason)
        transaction.on_commit(lambda: _queue("undo_import_job", job.pk))


def import_job_undo(*, job_id: int, actor=None, reason: str = "") -> ImportJob:
    """Reverse every entry the job made, with a staff reversal's rules; what cannot be reversed is reported."""
    from loyalty.services import entries_reverse_bulk

    job = ImportJob.objects.select_related("undo_requested_by", "created_by").get(pk=job_id)
    if job.status == ImportStatus.APPLIED:
        import_job_start_undo(job=job, actor=actor, reason=reason)
        job.refresh_from_db()
    if job.status != ImportStatus.UNDOING:
        return job
    # An undone job never applies again: its tables (left by an apply that failed) go.
    sql.drop_table(job.ready_table)
    sql.drop_table(job.rows_table)
    reason = reason or job.undo_reason
    actor = actor or job.undo_requested_by or job.created_by or SystemActor(f"CSV import #{job.pk}: undo")
    text = _("Undo of CSV import #%(id)s") % {"id": job.pk}
    if reason:
        text = f"{text}: {reason}"
    last = 0
    report = list(job.undo_report)
    while ids := _entries_to_undo(job, after=last):
        last = ids[-1]
        result = entries_reverse_bulk(
            entry_ids=ids,
            reason=text,
            actor=actor,
            source=EntrySource.IMPORT,
            source_ref=job.pk,
            action="import_undo",
            free_keys=True,
        )
        report.extend(reason for _seq, reason in result.refused[: max(0, FIRST_PROBLEMS - len(report))])
        ImportJob.objects.filter(pk=job.pk).update(
            undo_reversed=F("undo_reversed") + result.posted,
            undo_refused=F("undo_refused") + len(result.refused),
            undo_report=report,
        )
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.UNDONE, undone_at=timezone.now())
    job.refresh_from_db()
    return job


def import_job_undo_preview(*, job: ImportJob, actor, reason: str = ""):
    """What undoing the job will do: the undo's own bulk path in dry-run, over every entry it will reverse
    (loyalty.services.previews)."""
    from loyalty.services.previews import reverse_preview

    entry_ids = (
        LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk)
        .exclude(kind=EntryKind.REVERSAL)
        .exclude(status=EntryStatus.REJECTED)
        .filter(reversed_by__isnull=True, reversal_shortfall__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    text = _("Undo of CSV import #%(id)s") % {"id": job.pk}
    return reverse_preview(
        entry_ids=entry_ids,
        reason=f"{text}: {reason}" if reason else text,
        actor=actor,
        source=EntrySource.IMPORT,
        source_ref=job.pk,
        action="import_undo",
    )


def _entries_to_undo(job: ImportJob, *, after: int) -> list[int]:
    """The job's entries not yet undone (a resumed undo skips what the first run reversed), in id order."""
    return list(
        LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk, pk__gt=after)
        .exclude(kind=EntryKind.REVERSAL)
        .exclude(status=EntryStatus.REJECTED)
        .filter(reversed_by__isnull=True, reversal_shortfall__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)[: chunk_rows()]
    )


def import_job_status(job: ImportJob) -> dict:
    """What the job page's progress bar polls."""
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": str(job.get_status_display()),
        "total": job.total,
        "progress": job.progress,
        "percent": job.percent,
        "applied": job.applied,
        "skipped": job.skipped,
        "failed": job.failed,
        "points_credited": job.points_credited,
        "points_debited": job.points_debited,
        "members_touched": job.members_touched,
        "done": job.status not in (ImportStatus.CHECKING, ImportStatus.APPLYING, ImportStatus.UNDOING),
        "error": job.error,
    }
