"""Point adjustments: `email` or `customer_id`, `points` (signed), `reason` (optional), `reference` (optional).

Each row is one adjustment entry through the ledger's bulk path. Its idempotency key is `import:ref:<reference>`
when the row gives a reference (so the same reference never applies twice, whatever file carries it), else
`import:<file checksum>:<row number>` (so the same file never applies twice).
"""

from django.utils.translation import gettext as _

from loyalty.keys import credited_sql
from loyalty.models import EntryKind, EntrySource, LedgerEntry
from loyalty.services import PostingsQuery, entries_post_bulk

from ...models import ImportJob
from .. import sql
from ..parsing import RefusedRow
from .base import ChunkResult, Context, Kind, clip, id_problem, in_chunk, whole_number

MAX_REFERENCE = 180
MAX_REASON = LedgerEntry._meta.get_field("reason").max_length  # the entry's own limit: longer would fail the chunk
# A reference's key (any file may carry it), not this file's own.
REFERENCE_PREFIX = "import:ref:"


def file_keys_may_be_on_ledger(ctx: Context) -> bool:
    """Whether a key "import:<checksum>:<row>" of this file may already be on the ledger (or a shortfall).

    Only an import of the very same file posts such keys, and only once it has started applying (started_at is set
    before any chunk): if no job with this checksum has, none of those keys exists and none needs looking up.
    """
    return ImportJob.objects.filter(checksum=ctx.checksum, started_at__isnull=False).exists()


class PointsKind(Kind):
    name = "points"
    columns = ("email", "customer_id", "points", "reason", "reference")
    required = ("points",)
    one_of = ("email", "customer_id")
    stage = (
        ("row_no", "int"),
        ("email", "text"),
        ("customer_id", "text"),
        ("points", "int"),
        ("reason", "text"),
        ("reference", "text"),
        ("problem", "text"),
        ("problem_column", "text"),
    )
    undoable = True
    rows_without_empty_strings = True
    splittable = True  # a row without a member is a problem: every row that applies has its member

    def normalise(self, table, index, ctx: Context):
        """Rows for the job's table, with the cheap per-cell checks; members and duplicates are checked in SQL.

        This loop runs once per row of a file of millions, so it avoids per-row helpers: the usual points (plain
        digits, or "-" then digits) are passed on as text without int(); anything else goes through whole_number.
        """
        n = len(table.header)
        ie, ic, ip, ir, iref = (index.get(c, -1) for c in self.columns)
        for row, cells in table.rows:
            if type(cells) is RefusedRow:
                yield self.refused_row(row, cells)
                continue
            if len(cells) < n:
                cells.extend([""] * (n - len(cells)))
            cells.append("")  # a column the file lacks has position -1: it reads as this ""
            email, customer_id, text = cells[ie].strip(), cells[ic].strip(), cells[ip].strip()
            reason, reference = cells[ir].strip(), cells[iref].strip()
            digits = text[1:] if text[:1] == "-" else text
            if digits.isdigit() and digits.isascii() and len(digits) < 10 and digits[0] != "0":
                problem = column = None  # 1 to 999,999,999 points, within MAX_POINTS
            else:
                points, problem = whole_number(text)
                text, column = (None, "points") if problem else (str(points), None)
            if not email and not customer_id:
                problem, column = _("email and customer_id are both empty"), "email"
            elif len(reference) > MAX_REFERENCE:
                problem, column = (
                    _("the reference is longer than %(max)s characters") % {"max": MAX_REFERENCE},
                    ("reference"),
                )
            elif len(reason) > MAX_REASON:
                problem, column = _("the reason is longer than %(max)s characters") % {"max": MAX_REASON}, "reason"
            elif len(email) > 254 or len(customer_id) > 64:
                problem, column = _("“%(value)s” is too long") % {"value": clip(email or customer_id)}, "email"
            elif customer_id and (bad := id_problem(customer_id, "customer_id")):
                problem, column = bad, "customer_id"
            elif reference and (bad := id_problem(reference, "reference")):
                problem, column = bad, "reference"
            yield (
                row,
                email.lower() or None,
                customer_id or None,
                text,
                reason or None,
                reference or None,
                problem,
                column,
            )

    def resolve(self, ctx: Context) -> None:
        rows = f"imports_job_rows_{ctx.job_id}"
        self.create_ready(
            ctx,
            (
                ("row_no", "int"),
                ("member_id", "int"),
                ("points", "int"),
                ("reason", "text"),
                ("idem_key", "text"),
                ("problem", "text"),
                ("problem_column", "text"),
            ),
        )
        sql.execute(
            f"""INSERT INTO {ctx.ready} (row_no, member_id, points, reason, idem_key, problem, problem_column)
            SELECT r.row_no, COALESCE(me.id, mc.id), r.points, COALESCE(r.reason, %s),
                   CASE WHEN r.reference IS NOT NULL THEN 'import:ref:' || r.reference
                        ELSE 'import:' || %s || ':' || r.row_no END,
                   CASE WHEN r.problem IS NOT NULL THEN r.problem
                        WHEN d.first_row IS NOT NULL
                            THEN 'the reference ' || r.reference || ' is also on row ' || d.first_row
                        WHEN me.id IS NULL AND mc.id IS NULL AND r.email IS NOT NULL
                            THEN 'no member has the email ' || r.email
                        WHEN me.id IS NULL AND mc.id IS NULL
                            THEN 'no member has the customer id ' || r.customer_id
                        WHEN me.id <> mc.id
                            THEN 'the email and the customer id belong to two different members' END,
                   CASE WHEN r.problem IS NOT NULL THEN r.problem_column
                        WHEN d.first_row IS NOT NULL THEN 'reference'
                        WHEN me.id IS NULL AND mc.id IS NULL AND r.email IS NULL THEN 'customer_id'
                        WHEN me.id IS NULL AND mc.id IS NULL OR me.id <> mc.id THEN 'email' END
            FROM {rows} r
            LEFT JOIN loyalty_member me ON me.email = r.email
            LEFT JOIN loyalty_member mc ON mc.customer_id = r.customer_id
            LEFT JOIN (SELECT reference, MIN(row_no) AS first_row FROM {rows} WHERE reference IS NOT NULL
                       GROUP BY reference HAVING COUNT(*) > 1) d
                   ON d.reference = r.reference AND r.row_no > d.first_row""",
            [ctx.reason, ctx.checksum],
        )

    def already_applied_sql(self, ctx: Context) -> str:
        on_ledger = credited_sql("x.idem_key")
        if file_keys_may_be_on_ledger(ctx):
            return on_ledger
        # Only rows with a reference can be on the ledger: look those up, not a million file keys.
        return f"(SUBSTR(x.idem_key, 1, {len(REFERENCE_PREFIX)}) = '{REFERENCE_PREFIX}' AND {on_ledger})"

    def _query(self, ctx: Context, lo: int, hi: int, members: tuple[int, int] | None = None) -> PostingsQuery:
        """The ready rows lo < row_no <= hi without a problem (of the members lo..hi in `members` when given), as
        postings in file order."""
        return PostingsQuery(
            sql=f"""SELECT row_no AS seq, member_id, points, reason, idem_key AS idempotency_key, 'active' AS status,
                           NULL AS hold_until, NULL AS earn_rule_id
                    FROM {ctx.ready} WHERE {in_chunk(lo, hi, members=members)}""",
            params=[],
            kind=EntryKind.ADJUSTMENT,
            counts_toward_lifetime=ctx.counts_toward_lifetime,
        )

    def simulate(self, ctx: Context):
        """The whole apply in dry-run (loyalty.services.previews): every row, in file order, through the very bulk
        path, actor, staff action and policy the apply uses, writing nothing."""
        from loyalty.services.previews import _dry

        query = self._query(ctx, 0, sql.one(f"SELECT COALESCE(MAX(row_no), 0) FROM {ctx.ready}"))
        # As the apply's first run: while no upload of this file has started applying, only references need a look
        # on the ledger (file_keys_may_be_on_ledger).
        new_unless = None if file_keys_may_be_on_ledger(ctx) else REFERENCE_PREFIX
        return _dry(
            lambda: entries_post_bulk(
                queries=[query],
                actor=ctx.actor,
                source=EntrySource.IMPORT,
                source_ref=ctx.job_id,
                action="import",
                keys_new_unless_prefix=new_unless,
                dry_run=True,
            ),
            0,
        )

    def apply_chunk(self, ctx: Context, lo: int, hi: int, members: tuple[int, int] | None = None) -> ChunkResult:
        query = self._query(ctx, lo, hi, members)
        # The file's own keys are known new on a first run: only references need looking up on the ledger.
        chunk, _refused = post_postings(
            ctx, queries=[query], keys_new_unless_prefix=REFERENCE_PREFIX if ctx.file_keys_new else None
        )
        return chunk


def post_postings(ctx: Context, postings=(), rows_of=(), *, queries=(), keys_new_unless_prefix=None):
    """Post through the ledger's bulk path as the job's actor and record its refusals as the job's row problems.

    postings: Posting/Move objects, with rows_of giving each one's row number in the file; queries: PostingsQuery
    objects whose seq is the row number. Returns (ChunkResult, the row numbers refused).
    """
    if not postings and not queries:
        return ChunkResult(), set()
    result = entries_post_bulk(
        postings=postings,
        queries=queries,
        actor=ctx.actor,
        source=EntrySource.IMPORT,
        source_ref=ctx.job_id,
        action="import",
        keys_new_unless_prefix=keys_new_unless_prefix,
    )
    refused = [(rows_of[seq] if postings else seq, reason) for seq, reason in result.refused]
    sql.executemany(
        """INSERT INTO imports_importrowproblem (job_id, row_number, column_name, reason, phase)
           VALUES (%s, %s, '', %s, 'apply')""",
        [(ctx.job_id, row, reason[:500]) for row, reason in refused],
    )
    chunk = ChunkResult(
        applied=result.posted,
        skipped=result.already_applied + result.nothing_to_do,
        refused=len(refused),
        points_credited=result.points_credited,
        points_debited=result.points_debited,
    )
    return chunk, {row for row, _reason in refused}
