"""Earned batches: what each active credit left, spent earliest first. Part of the ledger service.

Every active credit (an earning, a credit adjustment, a reversal that gives points back) opens a batch; every active
debit (redemption, negative adjustment, reversal, take-back, "set to" below, expiration) spends the open batches in
spending order (loyalty.rules.BATCH_ORDER) with loyalty.rules.allocate_debit. Pending points open their batch when
they become active, so their expiry clock starts then. The single path (ledger.py) calls `entry_batches` for each
entry it makes active; the bulk path (ledger_bulk.py) calls `stage_batches` once, which takes the set-based road for
members whose rows cannot interact (only credits on a balance not below zero; a single debit) and replays the others
with the very `BatchBook` the single path uses. Both write in the transaction of the entries.
"""

from dataclasses import dataclass, field

from django.db import connection

from .. import rules
from ..models import EntryKind, PointsBatch
from ..profiling import step
from .tables import execute as _exec
from .tables import fill_table
from .tables import rows as _rows

ORDER_SQL = "earned_at, id"  # rules.BATCH_ORDER


@dataclass
class OpenBatch:
    id: int | None
    remaining: int
    expired: int = 0
    expiration_entry_id: int | None = None
    changed: bool = False


@dataclass
class BatchBook:
    """A member's open batches in spending order, and what the entries of a transaction do to them."""

    available: int
    batches: list[OpenBatch] = field(default_factory=list)
    new: list[tuple[int, int, int]] = field(default_factory=list)  # (entry id, points, remaining) in order

    def credit(self, *, entry_id: int, points: int) -> OpenBatch:
        self.available += points
        batch = OpenBatch(None, rules.credit_remainder(points=points, available_after=self.available))
        self.batches.append(batch)
        self.new.append((entry_id, points, batch))
        return batch

    def debit(self, *, entry_id: int, points: int, kind: str) -> None:
        """Spend `points` (positive) from the earliest batches; an expiration records what expired from each."""
        self.available -= points
        open_batches = [b for b in self.batches if b.remaining > 0]
        for batch, take in zip(open_batches, rules.allocate_debit([b.remaining for b in open_batches], points)):
            if take:
                batch.remaining -= take
                batch.changed = True
                if kind == EntryKind.EXPIRATION:
                    batch.expired += take
                    batch.expiration_entry_id = entry_id

    def apply(self, *, entry_id: int, points: int, kind: str) -> None:
        if points > 0:
            self.credit(entry_id=entry_id, points=points)
        else:
            self.debit(entry_id=entry_id, points=-points, kind=kind)


def _open_batches(member_ids) -> dict[int, list[OpenBatch]]:
    found: dict[int, list[OpenBatch]] = {m: [] for m in member_ids}
    rows = (
        PointsBatch.objects.filter(member_id__in=list(member_ids), remaining__gt=0)
        .order_by("member_id", *rules.BATCH_ORDER)
        .values_list("member_id", "id", "remaining", "expired_points", "expiration_entry_id")
    )
    for member_id, *batch in rows:
        found[member_id].append(OpenBatch(*batch))
    return found


def entry_batches(*, member_id: int, available_before: int, entry_id: int, points: int, kind: str, at) -> None:
    """The single path: one entry became active (made active, or a pending one moved to active) at `at`."""
    if points > 0:
        # A credit touches no other batch: no need to read them.
        PointsBatch.objects.create(
            member_id=member_id,
            entry_id=entry_id,
            earned_at=at,
            points=points,
            remaining=rules.credit_remainder(points=points, available_after=available_before + points),
        )
        return
    book = BatchBook(available_before, _open_batches([member_id])[member_id])
    book.debit(entry_id=entry_id, points=-points, kind=kind)
    _write_changes([book.batches])


def _write_changes(batch_lists) -> None:
    changed = [b for batches in batch_lists for b in batches if b.changed and b.id is not None]
    if len(changed) <= 20:
        for batch in changed:
            PointsBatch.objects.filter(pk=batch.id).update(
                remaining=batch.remaining, expired_points=batch.expired, expiration_entry_id=batch.expiration_entry_id
            )
        return
    _exec("DROP TABLE IF EXISTS ledger_stage_batch_changes")
    _exec(
        "CREATE TEMP TABLE ledger_stage_batch_changes (id bigint PRIMARY KEY, remaining bigint, expired bigint, "
        "expiration_entry_id bigint)"
    )
    fill_table(
        "ledger_stage_batch_changes",
        ("id", "remaining", "expired", "expiration_entry_id"),
        ((b.id, b.remaining, b.expired, b.expiration_entry_id) for b in changed),
    )
    _exec(
        """UPDATE loyalty_pointsbatch SET remaining = c.remaining, expired_points = c.expired,
               expiration_entry_id = c.expiration_entry_id
           FROM ledger_stage_batch_changes c WHERE loyalty_pointsbatch.id = c.id"""
    )
    _exec("DROP TABLE ledger_stage_batch_changes")


# ---------------------------------------------------------------------------------------------------------------
# The bulk path


EVENTS = "ledger_stage_batch_events"


def stage_batches(*, stage: str, new_state: int, now, active_rows: str) -> None:
    """The bulk path: the stage's rows that make points active (`active_rows`, an SQL condition over the stage's
    columns) open and spend batches, in posting order, as entry_batches would one by one. Runs before the members'
    figures are moved (their available balance is still the one before the batch)."""
    events = f"""SELECT seq, member_id, entry_id, points, kind, CASE WHEN op = 'post' THEN at END AS at FROM {stage}
                 WHERE state = {new_state} AND {active_rows}"""
    with step("batches"):
        _open_new_batches(events, now)
    if _rows("SELECT EXISTS (SELECT 1 FROM ledger_stage_batch_members WHERE road <> 1)")[0][0]:
        with step("batch_spends"):
            _exec(f"DROP TABLE IF EXISTS {EVENTS}")
            _exec(
                f"""CREATE TEMP TABLE {EVENTS} AS SELECT * FROM ({events}) e
                    WHERE e.member_id IN (SELECT member_id FROM ledger_stage_batch_members WHERE road <> 1)"""
            )
            _exec(f"CREATE INDEX {EVENTS}_member ON {EVENTS} (member_id, seq)")
            if connection.vendor == "postgresql":
                _exec(f"ANALYZE {EVENTS}")
        _spend_single_debits()
        replayed = [r[0] for r in _rows("SELECT member_id FROM ledger_stage_batch_members WHERE road = 3 ORDER BY 1")]
        if replayed:
            with step("batch_replays"):
                _replay(replayed, now)
        _exec(f"DROP TABLE {EVENTS}")
    _exec("DROP TABLE ledger_stage_batch_members")


def _open_new_batches(events: str, now) -> None:
    """Sort the members into roads (below), and open the batches of road 1 straight from the stage."""
    _exec("DROP TABLE IF EXISTS ledger_stage_batch_members")
    # Per member: how the batch treats it. 1: only credits on a balance not below zero (each batch holds its points);
    # 2: one debit alone (one window over the member's open batches); 3: anything else (replayed in order).
    _exec(
        f"""CREATE TEMP TABLE ledger_stage_batch_members AS
            SELECT e.member_id,
                   CASE WHEN SUM(CASE WHEN e.points < 0 THEN 1 ELSE 0 END) = 0 AND MIN(m.available_points) >= 0
                        THEN 1
                        WHEN COUNT(*) = 1 AND MIN(e.points) < 0 THEN 2 ELSE 3 END AS road
            FROM ({events}) e JOIN loyalty_member m ON m.id = e.member_id GROUP BY e.member_id"""
    )
    _exec("CREATE INDEX ledger_stage_batch_members_road ON ledger_stage_batch_members (member_id, road)")
    # The common batch (earnings, credits) is road 1 alone: its batches go straight from the stage, in posting order,
    # without copying its rows aside first.
    _exec(
        f"""INSERT INTO loyalty_pointsbatch (member_id, entry_id, earned_at, points, remaining, expired_points)
            SELECT e.member_id, e.entry_id, COALESCE(e.at, %s), e.points, e.points, 0 FROM ({events}) e
            WHERE e.member_id IN (SELECT member_id FROM ledger_stage_batch_members WHERE road = 1)
            ORDER BY e.seq""",
        [now],
    )


def _spend_single_debits() -> None:
    """Members whose only row is a debit: rules.allocate_debit_sql over a window of their open batches. Driven from
    the debits, so each member's open batches are read from the (member, earned_at, id) index in spending order, not
    by scanning every batch of the program."""
    with step("batch_spends"):
        _find_takes()
    with step("batch_updates"):
        _take()


def _find_takes() -> None:
    if connection.vendor == "postgresql":
        _exec("ANALYZE ledger_stage_batch_members")
    window = f"PARTITION BY b.member_id ORDER BY {_order('b')} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"
    before = f"CAST(COALESCE(SUM(b.remaining) OVER ({window}), 0) AS bigint)"
    take = rules.allocate_debit_sql(remaining="b.remaining", before="b.before", amount="b.amount")
    # What each batch gives first (a small table), then one update by primary key.
    _exec("DROP TABLE IF EXISTS ledger_stage_batch_takes")
    _exec(
        f"""CREATE TEMP TABLE ledger_stage_batch_takes AS
            SELECT b.id, b.kind, b.entry_id, {take} AS take
            FROM (SELECT b.id, b.remaining, d.kind, d.entry_id, -d.points AS amount, {before} AS before
                  FROM {EVENTS} d
                  JOIN ledger_stage_batch_members r ON r.member_id = d.member_id AND r.road = 2
                  JOIN loyalty_pointsbatch b ON b.member_id = d.member_id AND b.remaining > 0) b
            WHERE b.before < b.amount"""
    )
    if connection.vendor == "postgresql":
        _exec("ANALYZE ledger_stage_batch_takes")


def _take() -> None:
    expiration = f"'{EntryKind.EXPIRATION}'"
    _exec(
        f"""UPDATE loyalty_pointsbatch SET remaining = loyalty_pointsbatch.remaining - x.take,
                expired_points = loyalty_pointsbatch.expired_points
                    + CASE WHEN x.kind = {expiration} THEN x.take ELSE 0 END,
                expiration_entry_id = CASE WHEN x.kind = {expiration} THEN x.entry_id
                                           ELSE loyalty_pointsbatch.expiration_entry_id END
            FROM ledger_stage_batch_takes x
            WHERE loyalty_pointsbatch.id = x.id AND x.take > 0"""
    )
    _exec("DROP TABLE ledger_stage_batch_takes")


def _order(alias: str) -> str:
    return ", ".join(f"{alias}.{column}" for column in rules.BATCH_ORDER)


def _replay(member_ids: list[int], now) -> None:
    """Members whose rows interact (credits and debits, or credits on a balance below zero): the single path's
    BatchBook, row by row in posting order."""
    _exec("DROP TABLE IF EXISTS ledger_stage_batch_replay")
    _exec("CREATE TEMP TABLE ledger_stage_batch_replay (member_id bigint PRIMARY KEY)")
    fill_table("ledger_stage_batch_replay", ("member_id",), ((m,) for m in member_ids))
    available = dict(
        _rows(
            "SELECT id, available_points FROM loyalty_member "
            "WHERE id IN (SELECT member_id FROM ledger_stage_batch_replay)"
        )
    )
    books = {}
    for start in range(0, len(member_ids), 5000):
        chunk = member_ids[start : start + 5000]
        for member_id, batches in _open_batches(chunk).items():
            books[member_id] = BatchBook(available[member_id], batches)
    at_of = {}
    for member_id, entry_id, points, kind, at in _rows(
        f"""SELECT member_id, entry_id, points, kind, at FROM {EVENTS}
            WHERE member_id IN (SELECT member_id FROM ledger_stage_batch_replay) ORDER BY seq"""
    ):
        books[member_id].apply(entry_id=entry_id, points=points, kind=kind)
        at_of[entry_id] = at or now
    # New batches go in, member by member, in the order they were opened (posting order, as on the single path).
    opened = [(member_id, entry_id, points, b) for member_id, book in books.items() for entry_id, points, b in book.new]
    new_rows = [
        (i, member_id, entry_id, at_of[entry_id], points, b.remaining, b.expired, b.expiration_entry_id)
        for i, (member_id, entry_id, points, b) in enumerate(opened)
    ]
    if new_rows:
        ts = "timestamptz" if connection.vendor == "postgresql" else "datetime"
        _exec("DROP TABLE IF EXISTS ledger_stage_batch_new")
        _exec(
            f"CREATE TEMP TABLE ledger_stage_batch_new (ord bigint, member_id bigint, entry_id bigint, at {ts}, "
            "points bigint, remaining bigint, expired bigint, expiration_entry_id bigint)"
        )
        fill_table(
            "ledger_stage_batch_new",
            ("ord", "member_id", "entry_id", "at", "points", "remaining", "expired", "expiration_entry_id"),
            new_rows,
        )
        _exec(
            """INSERT INTO loyalty_pointsbatch (member_id, entry_id, earned_at, points, remaining, expired_points,
                   expiration_entry_id)
               SELECT member_id, entry_id, at, points, remaining, expired, expiration_entry_id
               FROM ledger_stage_batch_new ORDER BY ord"""
        )
        _exec("DROP TABLE ledger_stage_batch_new")
    _write_changes([book.batches for book in books.values()])
    _exec("DROP TABLE ledger_stage_batch_replay")
