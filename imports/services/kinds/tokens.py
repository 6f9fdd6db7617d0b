"""Reward tokens: `token`, `status` (`closed` credits, `rejected` rejects a pending credit), `email`, `amount`.

A closed token credits its conversion way to earn once (key `token:<token>`), pending for the rule's hold days;
a rejected token rejects that credit while it is still pending. Tokens are few per upload, so a chunk is resolved in
Python and posted through the ledger's bulk path as typed postings.
"""

from decimal import Decimal

from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty.keys import live_key_sql, token_earning_key
from loyalty.models import EarnRule, EarnRuleKind, EntryKind, EntryStatus, ProgramSettings, TokenStatus
from loyalty.rules import hold_days, hold_until
from loyalty.services import Move, Posting
from loyalty.services.ledger_bulk import REJECT
from loyalty.services.tokens import conversion_points

from .. import sql
from ..parsing import RefusedRow
from .base import ChunkResult, Context, Kind, amount, clip, id_problem, in_chunk
from .points import post_postings

CLOSED, REJECTED = TokenStatus.CLOSED.value, TokenStatus.REJECTED.value


class TokensKind(Kind):
    name = "tokens"
    columns = ("token", "status", "email", "amount")
    required = ("token", "status")
    stage = (
        ("row_no", "int"),
        ("token", "text"),
        ("status", "text"),
        ("email", "text"),
        ("amount", "text"),
        ("problem", "text"),
        ("problem_column", "text"),
    )
    undoable = True
    splittable = True  # a row without its token is a problem, and every token has its member

    def normalise(self, table, index, ctx: Context):
        for row, cells in self.cells(table, index):
            if type(cells) is RefusedRow:
                yield self.refused_row(row, cells)
                continue
            token, status, email, amount_text = cells
            status = status.lower()
            value, problem = amount(amount_text)
            column = "amount" if problem else None
            if not token:
                problem, column = _("token is empty"), "token"
            elif len(token) > 64:
                problem, column = _("“%(value)s” is not a token") % {"value": clip(token)}, "token"
            elif bad := id_problem(token, "token"):
                problem, column = bad, "token"
            elif status not in (CLOSED, REJECTED):
                problem, column = (
                    _("status must be closed or rejected, not “%(value)s”") % {"value": clip(status)},
                    ("status"),
                )
            yield row, token or None, status, email.lower() or None, _text(value), problem, column

    def resolve(self, ctx: Context) -> None:
        rows = f"imports_job_rows_{ctx.job_id}"
        default_rule = (
            EarnRule.objects.filter(kind=EarnRuleKind.CONVERSION, active=True).order_by("pk").values_list("pk", flat=1)
        ).first()
        self.create_ready(
            ctx,
            (
                ("row_no", "int"),
                ("token", "text"),
                ("token_id", "int"),
                ("member_id", "int"),
                ("status", "text"),
                ("amount", "text"),
                ("rule_id", "int"),
                ("credit_id", "int"),
                ("credit_status", "text"),
                ("token_status", "text"),
                ("problem", "text"),
                ("problem_column", "text"),
            ),
        )
        sql.execute(
            f"""INSERT INTO {ctx.ready} (row_no, token, token_id, member_id, status, amount, rule_id, credit_id,
                    credit_status, token_status, problem, problem_column)
            SELECT r.row_no, r.token, t.id, t.member_id, r.status, r.amount, COALESCE(t.earn_rule_id, %s), e.id,
                   e.status, t.status,
                   CASE WHEN r.problem IS NOT NULL THEN r.problem
                        WHEN d.first_row IS NOT NULL THEN 'the token ' || r.token || ' is also on row ' || d.first_row
                        WHEN t.id IS NULL THEN 'no reward token ' || r.token
                        WHEN r.email IS NOT NULL AND m.email <> r.email
                            THEN 'the token ' || r.token || ' belongs to another member, not ' || r.email
                        WHEN r.status = 'closed' AND r.amount IS NOT NULL AND CAST(r.amount AS DECIMAL) < 0
                            THEN 'the sale amount cannot be negative'
                        WHEN r.status = 'closed' AND t.status = 'rejected'
                            THEN 'the token ' || r.token || ' was rejected: it cannot be credited'
                        WHEN r.status = 'closed' AND t.status <> 'closed' AND COALESCE(t.earn_rule_id, %s) IS NULL
                            THEN 'there is no active conversion way to earn to credit the token'
                        WHEN r.status = 'rejected' AND e.status = 'active' AND t.status <> 'rejected'
                            THEN 'the points of token ' || r.token || ' are already available: reverse entry #'
                                 || e.id || ' instead'
                   END,
                   CASE WHEN r.problem IS NOT NULL THEN r.problem_column
                        WHEN d.first_row IS NOT NULL OR t.id IS NULL THEN 'token'
                        WHEN r.email IS NOT NULL AND m.email <> r.email THEN 'email'
                        ELSE 'status' END
            FROM {rows} r
            LEFT JOIN loyalty_rewardtoken t ON t.token = r.token
            LEFT JOIN loyalty_member m ON m.id = t.member_id
            LEFT JOIN loyalty_ledgerentry e ON e.idempotency_key = {live_key_sql("'token:' || r.token")}
            LEFT JOIN (SELECT token, MIN(row_no) AS first_row FROM {rows} WHERE token IS NOT NULL
                       GROUP BY token HAVING COUNT(*) > 1) d ON d.token = r.token AND r.row_no > d.first_row""",
            [default_rule, default_rule],
        )

    def already_applied_sql(self, ctx: Context) -> str:
        return "(x.token_status = x.status OR (x.status = 'closed' AND x.credit_id IS NOT NULL))"

    def apply_chunk(self, ctx: Context, lo: int, hi: int, members: tuple[int, int] | None = None) -> ChunkResult:
        found = sql.rows(
            f"""SELECT row_no, token, token_id, member_id, status, amount, rule_id, credit_id, credit_status,
                       token_status
                FROM {ctx.ready} WHERE {in_chunk(lo, hi, members=members)} ORDER BY row_no"""
        )
        earn_rules = {r.pk: r for r in EarnRule.objects.filter(pk__in={f[6] for f in found if f[6]})}
        default_hold = ProgramSettings.load().hold_days_default
        now = timezone.now()
        postings, rows_of, updates, skipped, only_token = [], [], [], 0, 0
        for (
            row_no,
            token,
            token_id,
            member_id,
            status,
            amount_text,
            rule_id,
            credit_id,
            credit_status,
            t_status,
        ) in found:
            if t_status == status or (status == CLOSED and credit_id):
                skipped += 1
                continue
            if status == CLOSED:
                rule = earn_rules[rule_id]
                points = conversion_points(rule, None if amount_text is None else Decimal(amount_text))
                if points > 0:
                    postings.append(_credit(token, member_id, points, rule, default_hold, now))
                    rows_of.append(row_no)
                else:
                    only_token += 1
                updates.append((row_no, CLOSED, amount_text, rule_id, token_id))
            else:
                if credit_status == "pending":
                    postings.append(Move(credit_id, REJECT, ctx.upload_reason or f"Token {token} rejected"))
                    rows_of.append(row_no)
                else:
                    # Rejected before it was ever credited: nothing on the ledger, the token just ends as rejected.
                    only_token += 1
                updates.append((row_no, REJECTED, None, None, token_id))
        result, refused_rows = post_postings(ctx, postings, rows_of)
        result.skipped += skipped
        result.applied += only_token
        _update_tokens([u for u in updates if u[0] not in refused_rows], now)
        return result


def _credit(token, member_id, points, rule, default_hold, now) -> Posting:
    """The posting crediting a token, exactly as loyalty.services.tokens.token_close posts it."""
    hold = hold_until(at=now, days=hold_days(rule_hold_days=rule.hold_days, program_default=default_hold))
    return Posting(
        member_id,
        points,
        f"Conversion: token {token} ({rule.name})",
        kind=EntryKind.EARN,
        status=EntryStatus.PENDING if hold else EntryStatus.ACTIVE,
        idempotency_key=token_earning_key(token),
        hold_until=hold,
        earn_rule_id=rule.pk,
    )


def _update_tokens(updates, now) -> None:
    if not updates:
        return
    with connection.cursor() as cur:
        cur.executemany(
            """UPDATE loyalty_rewardtoken SET status = %s, amount = COALESCE(CAST(%s AS DECIMAL), amount),
                   earn_rule_id = COALESCE(earn_rule_id, %s), closed_at = %s WHERE id = %s""",
            [
                (status, amount_text, rule_id, sql.adapt_datetime(now), token_id)
                for _row, status, amount_text, rule_id, token_id in updates
            ],
        )


def _text(value) -> str | None:
    return None if value is None else str(value)
