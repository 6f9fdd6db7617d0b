"""Reward tokens: `token`, `status` (`closed` credits, `rejected` rejects a pending credit), `email`, `amount`.

A closed token credits its conversion way to earn once (key `token:<token>`), pending for the rule's hold days;
a rejected token rejects that credit while it is still pending. Tokens are few per upload, so a chunk is resolved in
Python and posted through the ledger's bulk stage.
"""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty.models import EarnRule, EarnRuleKind, EntryKind, ProgramSettings, TokenStatus
from loyalty.services import ledger_bulk

from .. import sql
from .base import READY, ChunkResult, Context, Kind, amount, clip
from .points import post_stage

CLOSED, REJECTED = TokenStatus.CLOSED.value, TokenStatus.REJECTED.value


def token_key(token: str) -> str:
    """The idempotency key of a token's credit: the same in an upload, a scheduled pull and by hand."""
    return f"token:{token}"


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

    def normalise(self, table, index, ctx: Context):
        for row, (token, status, email, amount_text) in self.cells(table, index):
            status = status.lower()
            value, problem = amount(amount_text)
            column = "amount" if problem else None
            if not token:
                problem, column = _("token is empty"), "token"
            elif len(token) > 64:
                problem, column = _("“%(value)s” is not a token") % {"value": clip(token)}, "token"
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
        sql.create_table(
            READY,
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
            temp=True,
        )
        sql.execute(
            f"""INSERT INTO {READY} (row_no, token, token_id, member_id, status, amount, rule_id, credit_id,
                    credit_status, token_status, problem, problem_column)
            SELECT r.row_no, r.token, t.id, t.member_id, r.status, r.amount, COALESCE(t.earn_rule_id, %s), e.id,
                   e.status, t.status,
                   CASE WHEN r.problem IS NOT NULL THEN r.problem
                        WHEN d.first_row IS NOT NULL THEN 'the token ' || r.token || ' is also on row ' || d.first_row
                        WHEN t.id IS NULL THEN 'no reward token ' || r.token
                        WHEN r.email IS NOT NULL AND m.email <> r.email
                            THEN 'the token ' || r.token || ' belongs to another member, not ' || r.email
                        WHEN r.status = 'closed' AND t.status = 'rejected' AND e.id IS NULL
                            THEN 'the token ' || r.token || ' was rejected: it cannot be credited'
                        WHEN r.status = 'closed' AND e.id IS NULL AND COALESCE(t.earn_rule_id, %s) IS NULL
                            THEN 'there is no active conversion way to earn to credit the token'
                        WHEN r.status = 'rejected' AND e.status = 'active'
                            THEN 'the points of token ' || r.token || ' are already active: reverse the entry instead'
                   END,
                   CASE WHEN r.problem IS NOT NULL THEN r.problem_column
                        WHEN d.first_row IS NOT NULL OR t.id IS NULL THEN 'token'
                        WHEN r.email IS NOT NULL AND m.email <> r.email THEN 'email'
                        ELSE 'status' END
            FROM {rows} r
            LEFT JOIN loyalty_rewardtoken t ON t.token = r.token
            LEFT JOIN loyalty_member m ON m.id = t.member_id
            LEFT JOIN loyalty_ledgerentry e ON e.idempotency_key = 'token:' || r.token
            LEFT JOIN (SELECT token, MIN(row_no) AS first_row FROM {rows} WHERE token IS NOT NULL
                       GROUP BY token HAVING COUNT(*) > 1) d ON d.token = r.token AND r.row_no > d.first_row""",
            [default_rule, default_rule],
        )

    def already_applied_sql(self) -> str:
        return """((x.status = 'closed' AND x.credit_id IS NOT NULL)
                   OR (x.status = 'rejected' AND x.token_status = 'rejected'
                       AND COALESCE(x.credit_status, 'rejected') = 'rejected'))"""

    def apply_chunk(self, ctx: Context, lo: int, hi: int) -> ChunkResult:
        found = sql.rows(
            f"""SELECT row_no, token, token_id, member_id, status, amount, rule_id, credit_id, credit_status,
                       token_status
                FROM {READY} WHERE problem IS NULL AND row_no > %s AND row_no <= %s ORDER BY row_no""",
            [lo, hi],
        )
        rules = {r.pk: r for r in EarnRule.objects.filter(pk__in={f[6] for f in found if f[6]})}
        default_hold = ProgramSettings.load().hold_days_default
        now = timezone.now()
        stage, token_updates, skipped, only_token = [], [], 0, 0
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
            if status == CLOSED and credit_id:
                skipped += 1
                token_updates.append((row_no, CLOSED, amount_text, token_id))
            elif status == CLOSED:
                stage.append(
                    self._credit(ctx, row_no, token, member_id, amount_text, rules[rule_id], default_hold, now)
                )
                token_updates.append((row_no, CLOSED, amount_text, token_id))
            elif credit_status == "pending":
                stage.append(self._reject(ctx, row_no, token, member_id, credit_id))
                token_updates.append((row_no, REJECTED, amount_text, token_id))
            elif t_status == REJECTED:
                skipped += 1
            else:
                # Rejected before it was ever credited: nothing on the ledger, the token just closes as rejected.
                only_token += 1
                token_updates.append((row_no, REJECTED, amount_text, token_id))
        result, refused_rows = self._post(ctx, stage)
        result.skipped += skipped
        result.applied += only_token
        self._update_tokens([u for u in token_updates if u[0] not in refused_rows], now)
        return result

    def _credit(self, ctx, row_no, token, member_id, amount_text, rule, default_hold, now) -> tuple:
        points = rule.points
        if rule.points_per_currency_unit and amount_text:
            points = int(Decimal(amount_text) * rule.points_per_currency_unit)
        hold_days = rule.hold_days if rule.hold_days is not None else default_hold
        status = "pending" if hold_days else "active"
        hold_until = sql.adapt_datetime(now + timedelta(days=hold_days)) if hold_days else None
        reason = _("Conversion: reward token %(token)s") % {"token": token}
        if ctx.upload_reason:
            reason = f"{reason} ({ctx.upload_reason})"
        return (
            row_no,
            ledger_bulk.POST,
            member_id,
            points,
            "relative",
            EntryKind.EARN.value,
            status,
            True,
            reason,
            token_key(token),
            hold_until,
            rule.pk,
            None,
            None,
            None,
        )

    def _reject(self, ctx, row_no, token, member_id, credit_id) -> tuple:
        reason = _("Reward token %(token)s rejected") % {"token": token}
        if ctx.upload_reason:
            reason = f"{reason} ({ctx.upload_reason})"
        return (
            row_no,
            ledger_bulk.REJECT,
            member_id,
            0,
            "relative",
            EntryKind.EARN.value,
            "pending",
            True,
            reason,
            None,
            None,
            None,
            None,
            None,
            credit_id,
        )

    def _post(self, ctx, stage) -> tuple[ChunkResult, set[int]]:
        if not stage:
            return ChunkResult(), set()
        ledger_bulk.stage_create()
        try:
            ledger_bulk.fill_table(ledger_bulk.STAGE, ledger_bulk.STAGE_COLUMNS, stage)
            # A reject moves the pending entry's own points: read them from the entry.
            sql.execute(
                f"""UPDATE {ledger_bulk.STAGE} SET points = (SELECT e.points FROM loyalty_ledgerentry e
                        WHERE e.id = {ledger_bulk.STAGE}.entry_id) WHERE op = %s""",
                [ledger_bulk.REJECT],
            )
            return post_stage(ctx, with_refused=True)
        finally:
            ledger_bulk.stage_drop()

    def _update_tokens(self, updates, now) -> None:
        if not updates:
            return
        with sql.connection.cursor() as cur:
            cur.executemany(
                """UPDATE loyalty_rewardtoken SET status = %s, amount = COALESCE(CAST(%s AS DECIMAL), amount),
                       closed_at = CASE WHEN status = 'closed' THEN closed_at ELSE %s END WHERE id = %s""",
                [
                    (status, amount_text, sql.adapt_datetime(now), token_id)
                    for _row, status, amount_text, token_id in updates
                ],
            )


def _text(value) -> str | None:
    return None if value is None else str(value)
