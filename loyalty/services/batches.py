"""Earned batches: what each active credit made available, spent earliest first. Part of the ledger service.

Every active credit (an earning, a credit adjustment, a reversal that gives points back) opens a batch at the end of
its member's line of batches (loyalty.rules: BATCH_ORDER, batch_spent, batch_remaining); pending points open theirs
when they become active, so their expiry clock starts then. A debit writes nothing here: it moves the member's spent
points, which the available balance and the batched points already say. An expiration records where its span of the
line ends (LedgerEntry.spent_through). The single path (ledger.py) calls `batch_open` and `expiration_spent_through`;
the bulk path (ledger_bulk.py) calls `stage_batches` and `spent_through_sql`, which are the same rules in SQL over the
stage in posting order. Both write in the transaction of the entries.
"""

from .. import rules
from ..models import EntryKind, EntryStatus, LedgerEntry, Member, PointsBatch
from ..profiling import step
from .tables import execute as _exec


def batch_open(member: Member, *, entry_id: int, points: int, at) -> None:
    """The single path: a credit of `points` (positive) became active at `at` for `member` (locked; its
    batched_points moves here and is written with its other figures by the caller)."""
    member.batched_points += points
    PointsBatch.objects.create(
        member_id=member.pk, entry_id=entry_id, earned_at=at, points=points, through=member.batched_points
    )


def expiration_spent_through(member: Member, *, points: int) -> int:
    """The single path: where an expiration of `points` (negative), posted on `member`'s figures before it, ends on
    the member's line of batches."""
    return rules.batch_spent(batched=member.batched_points, available=member.available_points) - points


def open_batches(member: Member, *, limit: int | None = None) -> list[tuple[PointsBatch, int]]:
    """A member's batches with something left, in spending order, each with what is left of it (points)."""
    spent = rules.batch_spent(batched=member.batched_points, available=member.available_points)
    batches = PointsBatch.objects.filter(member_id=member.pk, through__gt=spent).order_by(*rules.BATCH_ORDER)
    if limit is not None:
        batches = batches[:limit]
    return [(b, rules.batch_remaining(through=b.through, points=b.points, spent=spent)) for b in batches]


# ---------------------------------------------------------------------------------------------------------------
# The bulk path


def spent_through_sql(*, stage: str, new_state: int, active_rows: str, one_row: bool) -> tuple[str, str]:
    """(expression, joins) for an INSERT ... SELECT over the stage aliased `s`: each expiration row's spent_through,
    the member's spent points after the row, as expiration_spent_through gives them one by one (the spent points
    before the call, plus the points of every debit the call makes active up to the row, in posting order).
    one_row: no member has more than one row of the call."""
    debit = f"CASE WHEN s.points < 0 AND {active_rows} THEN -s.points ELSE 0 END"
    # A pending expiration spends nothing (yet): no span, as on the single path.
    expiration = f"s.kind = '{EntryKind.EXPIRATION}' AND {active_rows}"
    if one_row:
        # One row per member (an expiry run): the running sum of the debits is the row's own.
        spent = rules.batch_spent_sql("spent_m")
        return (
            f"CASE WHEN {expiration} THEN {spent} + {debit} END",
            f"LEFT JOIN loyalty_member spent_m ON {expiration} AND spent_m.id = s.member_id",
        )
    running = f"SUM({debit}) OVER (PARTITION BY s.member_id ORDER BY s.seq ROWS UNBOUNDED PRECEDING)"
    spent = f"{rules.batch_spent_sql('m')} + {running}"
    window = f"""SELECT x.seq, x.spent_through FROM (
                     SELECT s.seq, {expiration} AS is_expiration, {spent} AS spent_through
                     FROM {stage} s JOIN loyalty_member m ON m.id = s.member_id
                     WHERE s.state = {new_state}) x
                 WHERE x.is_expiration"""
    return "spent_x.spent_through", f"LEFT JOIN ({window}) spent_x ON spent_x.seq = s.seq"


def stage_batches(*, stage: str, new_state: int, now, active_rows: str) -> None:
    """The bulk path: the stage's credits that become active (`active_rows`, an SQL condition over the stage's
    columns) open their batches, in posting order, as batch_open would one by one. Runs before the members' figures
    are moved (their batched points are still the ones before the batch)."""
    with step("batches"):
        # The row's `at` is a history load's moment for a post; a pending entry made active starts its clock now.
        _exec(
            f"""INSERT INTO loyalty_pointsbatch (member_id, entry_id, earned_at, points, through)
                SELECT s.member_id, s.entry_id, COALESCE(CASE WHEN s.op = 'post' THEN s.at END, %s), s.points,
                       m.batched_points + SUM(s.points) OVER (PARTITION BY s.member_id ORDER BY s.seq
                                                              ROWS UNBOUNDED PRECEDING)
                FROM {stage} s JOIN loyalty_member m ON m.id = s.member_id
                WHERE s.state = {new_state} AND s.points > 0 AND {active_rows}
                -- In the window's (member, posting) order: batch ids rise along each member's line, as on the single
                -- path, without a second sort of the stage.
                """,
            [now],
        )


def batched_delta_sql(active_rows: str, summed: bool = True) -> str:
    """The SQL sum, over a member's rows of the stage, of what their batched points grow by (summed=False: what one
    row adds)."""
    grows = f"CASE WHEN points > 0 AND {active_rows} THEN points ELSE 0 END"
    return f"SUM({grows})" if summed else grows


# ---------------------------------------------------------------------------------------------------------------
# What expired of a batch


def batch_expired(entry_id: int) -> int:
    """What expired of the batch an entry opened (points; 0 when it opened none): its overlap with the spans of its
    member's expirations (rules.span_overlap). Its SQL twin is batch_expired_sql."""
    batch = PointsBatch.objects.filter(entry_id=entry_id).values_list("member_id", "through", "points").first()
    if batch is None:
        return 0
    member_id, through, points = batch
    spans = LedgerEntry.objects.filter(
        member_id=member_id,
        kind=EntryKind.EXPIRATION,
        status=EntryStatus.ACTIVE,
        spent_through__gt=through - points,
    ).values_list("spent_through", "points")
    return sum(
        (rules.span_overlap(through=through, points=points, span_end=end, span_points=-taken) for end, taken in spans),
        start=0,
    )


def batch_expired_sql(entry: str) -> str:
    """batch_expired of the entry whose id is the SQL `entry`, as a scalar SQL subquery."""
    overlap = rules.span_overlap_sql(
        through="b.through", points="b.points", span_end="x.spent_through", span_points="-x.points"
    )
    return f"""COALESCE((SELECT SUM({overlap}) FROM loyalty_pointsbatch b
                         JOIN loyalty_ledgerentry x ON x.member_id = b.member_id
                              AND x.kind = '{EntryKind.EXPIRATION}' AND x.status = 'active'
                              AND x.spent_through > b.through - b.points
                         WHERE b.entry_id = {entry}), 0)"""
