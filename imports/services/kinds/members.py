"""Members: `email` (required), `customer_id`, `first_name`, `last_name`, `signed_up_at` (empty = guest).

Rows upsert members by email (lower case). An empty cell keeps what the member already has, so a guest row never
turns a signed-up member back into a guest. A row that would change nothing counts as already applied.
"""

from django.utils import timezone
from django.utils.translation import gettext as _

from tiers.rules import tier_for_sql, tier_table

from .. import sql
from ..parsing import RefusedRow
from .base import ChunkResult, Context, Kind, clip, email_problem, id_problem, in_chunk, moment


class MembersKind(Kind):
    name = "members"
    columns = ("email", "customer_id", "first_name", "last_name", "signed_up_at")
    required = ("email",)
    stage = (
        ("row_no", "int"),
        ("email", "text"),
        ("customer_id", "text"),
        ("first_name", "text"),
        ("last_name", "text"),
        ("signed_up_at", "ts"),
        ("problem", "text"),
        ("problem_column", "text"),
    )

    def normalise(self, table, index, ctx: Context):
        for row, cells in self.cells(table, index):
            if type(cells) is RefusedRow:
                yield self.refused_row(row, cells)
                continue
            email, customer_id, first_name, last_name, signed_up = cells
            email = email.lower()
            signed_up_at, problem = moment(signed_up)
            column = "signed_up_at" if problem else None
            if not email:
                problem, column = _("email is empty"), "email"
            elif bad := email_problem(email):
                problem, column = bad, "email"
            elif len(customer_id) > 64:
                problem, column = (
                    _("“%(value)s” is too long for a customer id") % {"value": clip(customer_id)},
                    ("customer_id"),
                )
            elif bad := id_problem(customer_id, "customer_id"):
                problem, column = bad, "customer_id"
            elif len(first_name) > 150 or len(last_name) > 150:
                problem, column = _("the name is longer than 150 characters"), "first_name"
            yield (
                row,
                email,
                customer_id or None,
                first_name or None,
                last_name or None,
                sql.adapt_datetime(signed_up_at),
                problem,
                column,
            )

    def resolve(self, ctx: Context) -> None:
        rows = f"imports_job_rows_{ctx.job_id}"
        self.create_ready(ctx, (*self.stage[:-2], ("member_id", "int"), ("unchanged", "int"), *self.stage[-2:]))
        sql.execute(
            f"""INSERT INTO {ctx.ready} (row_no, email, customer_id, first_name, last_name, signed_up_at, member_id,
                    unchanged, problem, problem_column)
            SELECT r.row_no, r.email, r.customer_id, r.first_name, r.last_name, r.signed_up_at, me.id,
                   CASE WHEN me.id IS NOT NULL
                         AND COALESCE(r.customer_id, me.customer_id, '') = COALESCE(me.customer_id, '')
                         AND COALESCE(r.first_name, me.first_name) = me.first_name
                         AND COALESCE(r.last_name, me.last_name) = me.last_name
                         AND (r.signed_up_at IS NULL OR r.signed_up_at = me.signed_up_at) THEN 1 ELSE 0 END,
                   CASE WHEN r.problem IS NOT NULL THEN r.problem
                        WHEN de.first_row IS NOT NULL THEN 'the email ' || r.email || ' is also on row ' || de.first_row
                        WHEN dc.first_row IS NOT NULL
                            THEN 'the customer id ' || r.customer_id || ' is also on row ' || dc.first_row
                        WHEN mc.id IS NOT NULL AND (me.id IS NULL OR mc.id <> me.id)
                            THEN 'the customer id ' || r.customer_id || ' belongs to another member, ' || mc.email
                   END,
                   CASE WHEN r.problem IS NOT NULL THEN r.problem_column
                        WHEN de.first_row IS NOT NULL THEN 'email' ELSE 'customer_id' END
            FROM {rows} r
            LEFT JOIN loyalty_member me ON me.email = r.email
            LEFT JOIN loyalty_member mc ON mc.customer_id = r.customer_id
            LEFT JOIN (SELECT email, MIN(row_no) AS first_row FROM {rows} WHERE email IS NOT NULL
                       GROUP BY email HAVING COUNT(*) > 1) de ON de.email = r.email AND r.row_no > de.first_row
            LEFT JOIN (SELECT customer_id, MIN(row_no) AS first_row FROM {rows} WHERE customer_id IS NOT NULL
                       GROUP BY customer_id HAVING COUNT(*) > 1) dc
                   ON dc.customer_id = r.customer_id AND r.row_no > dc.first_row"""
        )

    def already_applied_sql(self, ctx: Context) -> str:
        return "x.unchanged = 1"

    def apply_chunk(self, ctx: Context, lo: int, hi: int) -> ChunkResult:
        rows = in_chunk(lo, hi)
        skipped = sql.one(f"SELECT COUNT(*) FROM {ctx.ready} WHERE {rows} AND unchanged = 1")
        # A member the chunk's earlier rows created (or another writer did since the check) is updated, not doubled.
        sql.execute(
            f"""UPDATE {ctx.ready} SET member_id = (SELECT m.id FROM loyalty_member m WHERE m.email = {ctx.ready}.email)
                WHERE {rows} AND member_id IS NULL"""
        )
        updated = sql.execute(
            f"""UPDATE loyalty_member SET customer_id = COALESCE(x.customer_id, loyalty_member.customer_id),
                    first_name = COALESCE(x.first_name, loyalty_member.first_name),
                    last_name = COALESCE(x.last_name, loyalty_member.last_name),
                    signed_up_at = COALESCE(x.signed_up_at, loyalty_member.signed_up_at)
                FROM {ctx.ready} x WHERE loyalty_member.id = x.member_id AND x.unchanged = 0
                    AND {in_chunk(lo, hi, "x")}"""
        )
        created = sql.execute(
            f"""INSERT INTO loyalty_member (email, customer_id, first_name, last_name, signed_up_at,
                    available_points, pending_points, lifetime_points, tier_id, created_at)
                SELECT email, customer_id, COALESCE(first_name, ''), COALESCE(last_name, ''), signed_up_at, 0, 0, 0,
                       {tier_for_sql("0", tier_table())}, %s
                FROM {ctx.ready} WHERE {rows} AND member_id IS NULL ORDER BY row_no""",
            [sql.adapt_datetime(timezone.now())],
        )
        return ChunkResult(applied=updated + created, skipped=skipped)
