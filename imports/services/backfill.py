""" "Reward past actions": credit what members did before the program started, for the ways to earn active now.

* Sign-up points: every member with an account (signed_up_at set) who signed up before program_started_at, once per
  active sign-up way to earn; key signup_earning_key (loyalty/keys.py), shared with every other path.
* Order points: every order placed before program_started_at by a member or a guest, once per active order way to
  earn; key order_earning_key (loyalty/keys.py), the webhook's own, so an automatic revert finds the earning.
  Points per currency unit of the earnable amount (the live earning's base: goods after discounts, tax and shipping
  as the program settings say) less what refunds returned of it, rounded down, or the rule's fixed points.
  Cancelled and test orders, orders without a customer, orders not paid (pending, authorized, refunded, voided,
  failed, expired) and orders with one of the program's revert tags earn nothing.
* Points stay pending for the rule's hold days counted from the sign-up or the order, like a live earning, so only
  recent actions are pending.
* A credit already made by the live paths for the same rule (a webhook's or "New conversions" order earning, a
  sign-up credited by staff) is not made again, and a second run credits only what is new. An undone run frees what
  it credited (loyalty.keys): a later run (after fixing a way to earn, say) credits those actions again.

Everything is set-based: the run hands the ledger's bulk path SELECTs over loyalty_member and loyalty_order whose rows
are postings (PostingsQuery), in member-id ranges (BackfillRange). Each range is a Celery task of its own that any
worker takes (so more workers on more machines add throughput), one transaction, idempotent and retried on its own;
the run's progress is the sum of its done ranges, and the range that completes the run queues its final step.
"""

import logging
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty.actors import SystemActor
from loyalty.background import range_delivery_counted
from loyalty.errors import LoyaltyError
from loyalty.keys import credited_sql, order_earning_key_sql, signup_earning_key_sql
from loyalty.models import EarnRule, EarnRuleKind, EntryKind, EntrySource, LedgerEntry, ProgramSettings
from loyalty.profiling import step
from loyalty.queueing import queue_task
from loyalty.services import PostingsQuery, entries_post_bulk, entries_reverse_bulk
from loyalty.services.orders import earnable_amount_sql, refunded_earnable_sql
from loyalty.services.staff import staff_policy

from ..models import BackfillRange, BackfillRun, BackfillStatus
from .sql import check_constraints_now

log = logging.getLogger(__name__)

CHUNK_MEMBERS = 50_000  # default member ids per range of a run (with their sign-ups and all their orders)
SEQ_SPAN = 10**12  # staging rows of the n-th rule are numbered n * SEQ_SPAN + member or order id
NOT_PAID = ("pending", "authorized", "refunded", "voided", "failed", "expired")
BACKFILL_JOB = SystemActor("Reward past actions")


@dataclass
class RuleLine:
    """One way to earn in a preview or a run: its values then, and what it credits."""

    rule_id: int
    name: str
    kind: str
    points: int
    points_per_currency_unit: str | None
    hold_days: int
    credits: int = 0
    points_total: int = 0


@dataclass
class Preview:
    program_started_at: object
    lines: list[RuleLine] = field(default_factory=list)

    @property
    def members(self) -> int:
        return sum(line.credits for line in self.lines if line.kind == EarnRuleKind.SIGNUP)

    @property
    def orders(self) -> int:
        return sum(line.credits for line in self.lines if line.kind == EarnRuleKind.ORDER)

    @property
    def points(self) -> int:
        return sum(line.points_total for line in self.lines)


# ---------------------------------------------------------------------------------------------------------------
# SQL pieces (PostgreSQL and SQLite)


def _pg() -> bool:
    return connection.vendor == "postgresql"


def _dt(value):
    return connection.ops.adapt_datetimefield_value(value)


def _plus_days(column: str, days: int) -> str:
    if _pg():
        return f"{column} + make_interval(days => {int(days)})"
    return f"strftime('%Y-%m-%d %H:%M:%f', {column}, '+{int(days)} days')"


def _order_points_sql(line: RuleLine, program: ProgramSettings) -> str:
    """Points of one order under the rule, rounded down, on the live earning's base (the program's earnable amount:
    loyalty.services.orders.amounts) less what its refunds returned of that base."""
    if not line.points_per_currency_unit:
        return str(int(line.points))
    amount = f"({earnable_amount_sql(program)} - {refunded_earnable_sql(program)})"
    rate = line.points_per_currency_unit
    if _pg():
        return f"CAST(FLOOR(GREATEST({amount}, 0) * CAST('{rate}' AS numeric)) AS bigint)"
    # SQLite holds decimals as floating point: a hair of tolerance keeps 4.35 x 100 at 435.
    return f"CAST(MAX({amount}, 0) * {float(rate)!r} + 0.000001 AS INTEGER)"


def _revert_tags_sql(program: ProgramSettings) -> str:
    checks = []
    for tag in program.revert_tag_list():
        safe = tag.replace("'", "''").replace("%", "").replace("_", "")
        if safe:
            checks.append(
                f"(',' || LOWER(REPLACE(o.tags, ' ', '')) || ',') NOT LIKE '%%,{safe},%%'"
            )  # %% : the statement has parameters
    return "".join(f" AND {c}" for c in checks)


def _new_only(key: str, only_new: bool) -> str:
    """The preview counts only what is new; a run stages every action so the bulk path counts "already credited"."""
    if not only_new:
        return ""
    return f" AND NOT {credited_sql(key)}"


def _signup_select(line: RuleLine, *, cutoff, now, only_new=True, lo=None, hi=None, seq_base=0):
    """(sql, params) selecting the staging rows of one sign-up rule: seq, member, points, status, key, hold."""
    key = signup_earning_key_sql("m.id", line.rule_id)
    hold = _plus_days("m.signed_up_at", line.hold_days)
    pending_after = now - timedelta(days=line.hold_days)
    span = " AND m.id BETWEEN %s AND %s" if lo is not None else ""
    sql = f"""
        SELECT {int(seq_base)} + m.id AS seq, m.id AS member_id, {int(line.points)} AS points,
               CASE WHEN m.signed_up_at > %s THEN 'pending' ELSE 'active' END AS status,
               {key} AS idem_key,
               CASE WHEN m.signed_up_at > %s THEN {hold} END AS hold_until
        FROM loyalty_member m
        WHERE m.signed_up_at IS NOT NULL AND m.signed_up_at < %s{span}{_new_only(key, only_new)}
          AND NOT EXISTS (SELECT 1 FROM loyalty_ledgerentry e WHERE e.member_id = m.id AND e.kind = 'earn'
                          AND e.earn_rule_id = {int(line.rule_id)} AND e.source <> 'backfill')"""
    params = [_dt(pending_after), _dt(pending_after), _dt(cutoff)]
    return sql, params + ([lo, hi] if lo is not None else [])


def _order_select(line: RuleLine, *, cutoff, now, program, only_new=True, lo=None, hi=None, seq_base=0):
    key = order_earning_key_sql("o.id", line.rule_id)
    hold = _plus_days("o.placed_at", line.hold_days)
    pending_after = now - timedelta(days=line.hold_days)
    span = " AND o.member_id BETWEEN %s AND %s" if lo is not None else ""
    not_paid = ", ".join(f"'{s}'" for s in NOT_PAID)
    sql = f"""
        SELECT seq, member_id, points, status, idem_key, hold_until, store_order_id FROM (
            SELECT {int(seq_base)} + o.id AS seq, o.member_id, {_order_points_sql(line, program)} AS points,
                   CASE WHEN o.placed_at > %s THEN 'pending' ELSE 'active' END AS status,
                   {key} AS idem_key,
                   CASE WHEN o.placed_at > %s THEN {hold} END AS hold_until,
                   o.store_order_id
            FROM loyalty_order o
            WHERE o.member_id IS NOT NULL AND o.placed_at < %s{span}
              AND NOT o.cancelled AND NOT o.test AND o.financial_status NOT IN ({not_paid}){_revert_tags_sql(program)}
              {_new_only(key, only_new)}
              AND NOT EXISTS (SELECT 1 FROM loyalty_ledgerentry e WHERE e.source = 'order' AND e.source_ref = o.id
                              AND e.kind = 'earn' AND e.earn_rule_id = {int(line.rule_id)})
        ) x WHERE points > 0"""
    params = [_dt(pending_after), _dt(pending_after), _dt(cutoff)]
    return sql, params + ([lo, hi] if lo is not None else [])


def _select_for(line: RuleLine, **kwargs):
    if line.kind == EarnRuleKind.SIGNUP:
        kwargs.pop("program", None)
        return _signup_select(line, **kwargs)
    return _order_select(line, **kwargs)


def _one(sql: str, params) -> tuple:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


# ---------------------------------------------------------------------------------------------------------------
# Preview


def active_rule_lines() -> list[RuleLine]:
    """The ways to earn a run applies: sign-up and order rules active now that give points."""
    lines = []
    for rule in EarnRule.objects.filter(active=True, kind__in=[EarnRuleKind.SIGNUP, EarnRuleKind.ORDER]).order_by("pk"):
        per_unit = rule.points_per_currency_unit if rule.kind == EarnRuleKind.ORDER else None
        if not rule.points and not per_unit:
            continue
        hold = rule.hold_days if rule.hold_days is not None else ProgramSettings.load().hold_days_default
        lines.append(
            RuleLine(
                rule_id=rule.pk,
                name=rule.name,
                kind=rule.kind,
                points=int(rule.points),
                points_per_currency_unit=str(per_unit) if per_unit else None,
                hold_days=int(hold),
            )
        )
    return lines


def backfill_preview(lines: list[RuleLine] | None = None) -> Preview:
    """What a run would credit now: one counting statement per way to earn, nothing written."""
    program = ProgramSettings.load()
    now = timezone.now()
    preview = Preview(program_started_at=program.program_started_at, lines=lines or active_rule_lines())
    with transaction.atomic():
        _quick_plans()
        for line in preview.lines:
            sql, params = _select_for(line, cutoff=program.program_started_at, now=now, program=program)
            with step(f"preview_{line.kind}"):
                count, total = _one(f"SELECT COUNT(*), COALESCE(SUM(points), 0) FROM ({sql}) rows_", params)
            line.credits, line.points_total = int(count), int(total)
    return preview


def _quick_plans() -> None:
    """The preview's counting statements run without JIT: over a big store their cost estimates pass its threshold,
    and compiling them took longer than running them (measured on 280,000 orders: 3.6 s of a 7.8 s count)."""
    if _pg():
        with connection.cursor() as cur:
            cur.execute("SET LOCAL jit = off")


# ---------------------------------------------------------------------------------------------------------------
# Run


def backfill_run_create(*, actor, queue: bool = True) -> BackfillRun:
    """Record the rules and point values as they are now and queue the run (unless the caller applies it itself);
    one run at a time."""
    with transaction.atomic():
        staff_policy(actor, "backfill")
    lines = active_rule_lines()
    if not lines:
        raise LoyaltyError(_("No active sign-up or order way to earn gives points: there is nothing to credit."))
    with transaction.atomic():
        busy = BackfillRun.objects.select_for_update().filter(
            status__in=[BackfillStatus.QUEUED, BackfillStatus.RUNNING, BackfillStatus.UNDOING]
        )
        if running := busy.first():
            raise LoyaltyError(
                _("Run #%(id)s is still %(status)s; wait for it to finish.")
                % {"id": running.pk, "status": running.get_status_display().lower()}
            )
        run = BackfillRun.objects.create(
            program_started_at=ProgramSettings.load().program_started_at,
            rules=[asdict(line) for line in lines],
            created_by=None if isinstance(actor, SystemActor) else actor,
        )
        if queue:
            transaction.on_commit(lambda: queue_task("imports.backfill_run", run.pk))
    return run


def _member_spans(after: int | None = None) -> list[tuple[int, int]]:
    """Member id ranges (of ids above `after`): every rule of a range goes in one transaction, so each member's row is
    written once per run (a member's row update is the costly part: it carries the members list's search indexes)."""
    lo, hi = _one("SELECT MIN(id), MAX(id) FROM loyalty_member WHERE id > %s", [after if after is not None else -1])
    if lo is None:
        return []
    size = range_members()
    return [(start, min(start + size - 1, hi)) for start in range(lo, hi + 1, size)]


def range_members() -> int:
    """Member ids per range (settings.BACKFILL_RANGE_MEMBERS): a range is one task and one transaction."""
    return int(getattr(settings, "BACKFILL_RANGE_MEMBERS", CHUNK_MEMBERS))


def _lines(run: BackfillRun) -> list[RuleLine]:
    return [RuleLine(**{k: v for k, v in rule.items() if k in RuleLine.__dataclass_fields__}) for rule in run.rules]


def backfill_run_apply(*, run_id: int, spread: bool = False) -> BackfillRun:
    """Start (or resume) a run: split it into member ranges and apply those not done yet.

    spread=False applies them here, one after another, and closes the run (the bench, the tests, a shell).
    spread=True (the run's Celery task) queues one task per range (imports.backfill_range), which any worker takes:
    the range that completes the run queues its final step (imports.backfill_close). A redelivered or resumed run
    keeps the ranges already done and queues the others again; a range queued twice posts nothing twice (its row
    lock and its `done` mark, committed with its entries, and the ledger's idempotency keys).
    """
    run = BackfillRun.objects.select_related("created_by").get(pk=run_id)
    if run.status not in (BackfillStatus.QUEUED, BackfillStatus.RUNNING, BackfillStatus.FAILED):
        return run
    with transaction.atomic():
        # The ranges are made once; a resumed run adds ranges for members who came after its last range.
        last = run.ranges.aggregate(top=Max("hi"))["top"]
        BackfillRange.objects.bulk_create(
            [BackfillRange(run=run, lo=lo, hi=hi) for lo, hi in _member_spans(after=last)], ignore_conflicts=True
        )
        # A resumed range starts its count of deliveries again (they were counted against the worker that died).
        run.ranges.filter(done=False).update(attempts=0)
        BackfillRun.objects.filter(pk=run.pk).update(
            status=BackfillStatus.RUNNING,
            started_at=run.started_at or timezone.now(),
            finished_at=None,
            error="",
            **_progress(run),
        )
    pending = list(run.ranges.filter(done=False).order_by("lo").values_list("pk", flat=True))
    if not pending:
        return backfill_run_close(run_id=run.pk)
    if spread:
        for range_id in pending:
            queue_task("imports.backfill_range", range_id)
        run.refresh_from_db()
        return run
    try:
        for range_id in pending:
            backfill_range_apply(range_id=range_id)
    except Exception as exc:
        backfill_run_fail(run_id=run.pk, message=str(exc))
        raise
    return backfill_run_close(run_id=run.pk)


def backfill_run_fail(*, run_id: int, message: str) -> None:
    """Stop the run: ranges still queued see it and do nothing; Resume queues them again."""
    BackfillRun.objects.filter(pk=run_id, status__in=(BackfillStatus.RUNNING, BackfillStatus.QUEUED)).update(
        status=BackfillStatus.FAILED, error=message[:2000], finished_at=timezone.now()
    )


def _progress(run: BackfillRun) -> dict:
    """The run's progress and counters: the sums over its done ranges."""
    sums = run.ranges.aggregate(
        n_total=Count("pk"),
        n_done=Count("pk", filter=Q(done=True)),
        n_members=Sum("members_credited", filter=Q(done=True)),
        n_orders=Sum("orders_credited", filter=Q(done=True)),
        n_points=Sum("points_credited", filter=Q(done=True)),
        n_already=Sum("already_credited", filter=Q(done=True)),
    )
    return {
        "steps_total": sums["n_total"],
        "steps_done": sums["n_done"],
        "members_credited": sums["n_members"] or 0,
        "orders_credited": sums["n_orders"] or 0,
        "points_credited": sums["n_points"] or 0,
        "already_credited": sums["n_already"] or 0,
    }


def backfill_range_start(*, range_id: int) -> bool:
    """Count a delivery of the range (committed at once, so a worker killed mid-range leaves its mark). False when
    the range has been delivered more than settings.JOB_MAX_STARTS times: the run then fails with that reason."""
    return range_delivery_counted(BackfillRange, range_id)


def backfill_range_apply(*, range_id: int) -> str:
    """Apply one range in one transaction: "done" (this call applied it), "last" (and it was the run's last range
    not done), "skipped" (already done, or the run is no longer running: failed, undone)."""
    own_transaction = not connection.in_atomic_block
    with transaction.atomic():
        # A second delivery of the same range waits here for the first to commit, then finds it done.
        span = BackfillRange.objects.select_for_update().filter(pk=range_id).first()
        if span is None or span.done:
            return "skipped"
        run = BackfillRun.objects.select_related("created_by").get(pk=span.run_id)
        if run.status != BackfillStatus.RUNNING:
            return "skipped"
        lines = _lines(run)
        _roomy_sorts()
        result = _apply_range(run, lines, span.lo, span.hi)
        signup_rules = {line.rule_id for line in lines if line.kind == EarnRuleKind.SIGNUP}
        signups = sum(n for rule_id, n in result.posted_by_rule.items() if rule_id in signup_rules)
        if own_transaction and _pg():
            with step("checks"):
                check_constraints_now()
        with step("progress"):
            BackfillRange.objects.filter(pk=span.pk).update(
                done=True,
                finished_at=timezone.now(),
                members_credited=signups,
                orders_credited=result.posted - signups,
                points_credited=result.points_credited,
                already_credited=result.already_applied,
            )
            # The ranges meet last on the run's row: one at a time, each sums the done ranges, so exactly one of
            # them sees none left and queues the final step.
            BackfillRun.objects.select_for_update().filter(pk=run.pk).values_list("pk", flat=True).first()
            progress = _progress(run)
            BackfillRun.objects.filter(pk=run.pk).update(**progress)
        return "last" if progress["steps_done"] == progress["steps_total"] else "done"


def backfill_run_close(*, run_id: int) -> BackfillRun:
    """The run's final step, once every range is done (safe to run twice): the summary is the sums of its ranges."""
    with transaction.atomic():
        run = BackfillRun.objects.select_for_update().get(pk=run_id)
        if run.status == BackfillStatus.RUNNING and not run.ranges.filter(done=False).exists():
            BackfillRun.objects.filter(pk=run.pk).update(
                status=BackfillStatus.DONE, finished_at=timezone.now(), **_progress(run)
            )
    run.refresh_from_db()
    return run


def _run_entries(run: BackfillRun):
    return LedgerEntry.objects.filter(source=EntrySource.BACKFILL, source_ref=run.pk, kind=EntryKind.EARN)


def _postings_query(line: RuleLine, seq_base: int, run: BackfillRun, lo: int, hi: int) -> PostingsQuery:
    """One rule's credits for a range of members, as postings the ledger's bulk path reads straight from the
    database."""
    program = ProgramSettings.load()
    sql, params = _select_for(
        line,
        cutoff=run.program_started_at,
        now=timezone.now(),
        program=program,
        only_new=False,
        lo=lo,
        hi=hi,
        seq_base=seq_base,
    )
    if line.kind == EarnRuleKind.SIGNUP:
        reason, reason_params = "%s", [f"Reward past actions: sign-up ({line.name})"]
    else:
        reason, reason_params = "%s || store_order_id || %s", ["Reward past actions: order ", f" ({line.name})"]
    return PostingsQuery(
        sql=f"""SELECT seq, member_id, points, {reason} AS reason, idem_key AS idempotency_key, status, hold_until,
                       {int(line.rule_id)} AS earn_rule_id
                FROM ({sql}) rows_""",
        params=reason_params + params,
        kind=EntryKind.EARN,
    )


def _apply_range(run: BackfillRun, lines: list[RuleLine], lo: int, hi: int):
    """Every rule's credits for the members lo..hi through the ledger's bulk path (in the caller's transaction)."""
    return entries_post_bulk(
        queries=[_postings_query(line, position * SEQ_SPAN, run, lo, hi) for position, line in enumerate(lines)],
        actor=run.created_by or BACKFILL_JOB,
        source=EntrySource.BACKFILL,
        source_ref=run.pk,
        action="backfill",
    )


def _roomy_sorts() -> None:
    """Let this transaction sort a range's rows (the bulk path's window functions) in memory, not on disk."""
    if _pg():
        with connection.cursor() as cur:
            cur.execute("SET LOCAL work_mem = '256MB'")


# ---------------------------------------------------------------------------------------------------------------
# Undo


def backfill_undo_request(*, run: BackfillRun, actor) -> BackfillRun:
    """Check the run can be undone (a staff actor needs the permission to run Reward past actions) and queue it."""
    with transaction.atomic():
        staff_policy(actor, "backfill")
        run = BackfillRun.objects.select_for_update().get(pk=run.pk)
        if run.status not in (BackfillStatus.DONE, BackfillStatus.FAILED):
            raise LoyaltyError(
                _("Run #%(id)s is %(status)s; only a finished run can be undone.")
                % {"id": run.pk, "status": run.get_status_display().lower()}
            )
        run.status = BackfillStatus.UNDOING
        run.undone_by = None if isinstance(actor, SystemActor) else actor
        run.undo_started_at = timezone.now()
        run.save(update_fields=["status", "undone_by", "undo_started_at"])
        transaction.on_commit(lambda: queue_task("imports.backfill_undo", run.pk))
    return run


def _undo_arguments(run: BackfillRun, actor) -> dict:
    """What the undo hands the bulk path, for the undo and for its preview alike."""
    return {
        "entry_ids": list(_run_entries(run).values_list("pk", flat=True)),
        "reason": f"Undo of Reward past actions run #{run.pk}",
        "actor": actor,
        "source": EntrySource.BACKFILL,
        "source_ref": run.pk,
        "action": "backfill",
        "policy": ProgramSettings.load().revert_negative_balance_policy,
    }


def backfill_undo_preview(*, run: BackfillRun, actor):
    """What undoing the run will do (loyalty.services.previews: the undo's own bulk path in dry-run)."""
    from loyalty.services.previews import reverse_preview

    return reverse_preview(**_undo_arguments(run, actor))


def backfill_undo(*, run_id: int) -> BackfillRun:
    """Reverse every credit of the run as one batch: pending ones are rejected, active ones reversed.

    Points already spent follow the automatic-revert policy (cap by default: take what is left, record the rest).
    """
    run = BackfillRun.objects.select_related("undone_by").get(pk=run_id)
    if run.status != BackfillStatus.UNDOING:
        return run
    result = entries_reverse_bulk(**_undo_arguments(run, run.undone_by or BACKFILL_JOB), free_keys=True)
    BackfillRun.objects.filter(pk=run.pk).update(
        status=BackfillStatus.UNDONE, undone_at=timezone.now(), undo_reversed=result.posted
    )
    run.refresh_from_db()
    return run
