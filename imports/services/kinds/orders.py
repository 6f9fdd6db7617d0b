"""Orders: `order_id`, `email`, `customer_id`, `total`, `currency`, `status`, `tags`, `placed_at`, and optionally what
the order was made of: `subtotal` (goods after discounts, without tax and shipping), `tax`, `shipping`.

Rows upsert loyalty.Order rows of the store "csv" by order id; a row that changes nothing counts as already applied.
Importing orders records them only: points for past orders come from "Reward past actions", which earns on the same
base as a live order (the program's earnable amount: the subtotal, else the total less tax and shipping; tax and
shipping only where the program says they earn), so an upload never credits or reverts points by itself.
"""

from django.utils import timezone
from django.utils.translation import gettext as _

from .. import sql
from ..parsing import RefusedRow
from .base import ChunkResult, Context, Kind, amount, clip, email_problem, id_problem, in_chunk, moment

CANCELLED = {"cancelled", "canceled", "voided"}


class OrdersKind(Kind):
    name = "orders"
    columns = (
        "order_id",
        "email",
        "customer_id",
        "total",
        "currency",
        "status",
        "tags",
        "placed_at",
        "subtotal",
        "tax",
        "shipping",
    )
    required = ("order_id", "total", "placed_at")
    parts = ("subtotal", "tax", "shipping")
    stage = (
        ("row_no", "int"),
        ("order_id", "text"),
        ("email", "text"),
        ("customer_id", "text"),
        ("total", "text"),
        ("currency", "text"),
        ("financial_status", "text"),
        ("cancelled", "bool"),
        ("tags", "text"),
        ("placed_at", "ts"),
        ("subtotal", "text"),
        ("tax", "text"),
        ("shipping", "text"),
        ("problem", "text"),
        ("problem_column", "text"),
    )

    def normalise(self, table, index, ctx: Context):
        for row, cells in self.cells(table, index):
            if type(cells) is RefusedRow:
                yield self.refused_row(row, cells)
                continue
            order_id, email, customer_id, total, currency, status, tags, placed, *part_cells = cells
            email, status, currency = email.lower(), status.lower(), (currency or "USD").upper()
            value, problem = amount(total)
            column = "total" if problem else None
            parts = []
            for name, text in zip(self.parts, part_cells, strict=True):
                part, bad = amount(text)
                if bad and not problem:
                    problem, column = bad, name
                elif part is not None and part < 0 and not problem:
                    problem, column = _("%(column)s must not be below 0") % {"column": name}, name
                parts.append(None if part is None else str(part))
            placed_at, bad_date = moment(placed)
            if not order_id or len(order_id) > 64:
                problem, column = _("order_id is empty or longer than 64 characters"), "order_id"
            elif bad := id_problem(order_id, "order_id") or id_problem(customer_id, "customer_id"):
                problem, column = bad, "order_id" if id_problem(order_id, "order_id") else "customer_id"
            elif value is None and not problem:
                problem, column = _("total is empty"), "total"
            elif bad_date or placed_at is None:
                problem, column = bad_date or _("placed_at is empty"), "placed_at"
            elif email and (bad := email_problem(email)):
                problem, column = bad, "email"
            elif len(currency) != 3 or not currency.isalpha():
                problem, column = (
                    _("“%(value)s” is not a currency code like USD") % {"value": clip(currency)},
                    ("currency"),
                )
            elif len(customer_id) > 64 or len(status) > 40 or len(tags) > 1000:
                problem, column = _("a cell is too long"), "tags"
            cancelled = status in CANCELLED
            yield (
                row,
                order_id or None,
                email,
                customer_id,
                None if value is None else str(value),
                currency,
                "" if cancelled else status,
                cancelled,
                tags,
                sql.adapt_datetime(placed_at),
                *parts,
                problem,
                column,
            )

    def resolve(self, ctx: Context) -> None:
        rows = f"imports_job_rows_{ctx.job_id}"
        self.create_ready(ctx, (*self.stage[:-2], ("member_id", "int"), ("unchanged", "int"), *self.stage[-2:]))
        sql.execute(
            f"""INSERT INTO {ctx.ready} (row_no, order_id, email, customer_id, total, currency, financial_status,
                    cancelled, tags, placed_at, subtotal, tax, shipping, member_id, unchanged, problem, problem_column)
            SELECT r.row_no, r.order_id, r.email, r.customer_id, r.total, r.currency, r.financial_status, r.cancelled,
                   r.tags, r.placed_at, r.subtotal, r.tax, r.shipping, COALESCE(me.id, mc.id),
                   CASE WHEN o.id IS NOT NULL AND o.email = r.email AND o.customer_id = r.customer_id
                         AND CAST(o.total AS NUMERIC) = CAST(r.total AS NUMERIC) AND o.currency = r.currency
                         AND o.financial_status = r.financial_status AND o.cancelled = r.cancelled
                         AND o.tags = r.tags AND o.placed_at = r.placed_at
                         AND COALESCE(CAST(o.earnable_amount AS NUMERIC), -1)
                             = COALESCE(CAST(r.subtotal AS NUMERIC), -1)
                         AND CAST(o.tax_amount AS NUMERIC) = CAST(COALESCE(r.tax, '0') AS NUMERIC)
                         AND CAST(o.shipping_amount AS NUMERIC) = CAST(COALESCE(r.shipping, '0') AS NUMERIC)
                         AND COALESCE(o.member_id, -1) = COALESCE(me.id, mc.id, -1) THEN 1 ELSE 0 END,
                   CASE WHEN r.problem IS NOT NULL THEN r.problem
                        WHEN d.first_row IS NOT NULL
                            THEN 'the order ' || r.order_id || ' is also on row ' || d.first_row END,
                   CASE WHEN r.problem IS NOT NULL THEN r.problem_column ELSE 'order_id' END
            FROM {rows} r
            LEFT JOIN loyalty_order o ON o.store = 'csv' AND o.store_order_id = r.order_id
            LEFT JOIN loyalty_member me ON r.email <> '' AND me.email = r.email
            LEFT JOIN loyalty_member mc ON r.customer_id <> '' AND mc.customer_id = r.customer_id
            LEFT JOIN (SELECT order_id, MIN(row_no) AS first_row FROM {rows} WHERE order_id IS NOT NULL
                       GROUP BY order_id HAVING COUNT(*) > 1) d ON d.order_id = r.order_id AND r.row_no > d.first_row"""
        )

    def already_applied_sql(self, ctx: Context) -> str:
        return "x.unchanged = 1"

    def apply_chunk(self, ctx: Context, lo: int, hi: int) -> ChunkResult:
        rows = in_chunk(lo, hi)
        skipped = sql.one(f"SELECT COUNT(*) FROM {ctx.ready} WHERE {rows} AND unchanged = 1")
        applied = sql.execute(
            f"""INSERT INTO loyalty_order (store, store_order_id, order_number, member_id, email, customer_id, total,
                    earnable_amount, tax_amount, shipping_amount, currency, financial_status, cancelled, tags,
                    placed_at, updated_at, test)
                SELECT 'csv', order_id, '', member_id, email, customer_id, CAST(total AS NUMERIC),
                       CAST(subtotal AS NUMERIC), CAST(COALESCE(tax, '0') AS NUMERIC),
                       CAST(COALESCE(shipping, '0') AS NUMERIC), currency, financial_status, cancelled, tags,
                       placed_at, %s, %s
                FROM {ctx.ready} WHERE {rows} AND unchanged = 0 ORDER BY row_no
                ON CONFLICT (store, store_order_id) DO UPDATE SET member_id = excluded.member_id,
                    email = excluded.email, customer_id = excluded.customer_id, total = excluded.total,
                    earnable_amount = excluded.earnable_amount, tax_amount = excluded.tax_amount,
                    shipping_amount = excluded.shipping_amount,
                    currency = excluded.currency, financial_status = excluded.financial_status,
                    cancelled = excluded.cancelled, tags = excluded.tags, placed_at = excluded.placed_at,
                    updated_at = excluded.updated_at""",
            [sql.adapt_datetime(timezone.now()), False],
        )
        return ChunkResult(applied=applied, skipped=skipped)
