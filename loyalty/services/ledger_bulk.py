"""The ledger's bulk path: many postings at once with set-based SQL, giving the same ledger as posting one by one.

Callers hand it typed input: `Posting` rows, `Move`s of pending entries, or `PostingsQuery` (a SELECT whose named
columns are postings, for a million rows that never need to leave the database). Only this module knows its staging
table. In one transaction:
1. the postings go into a temporary staging table (COPY on PostgreSQL, or INSERT ... SELECT), with each fact's live
   key (loyalty.keys: a fact freed by an undo carries its next generation);
2. rows whose key is already on the ledger are marked "already applied"; the members concerned are locked in
   primary-key order; the staff policy is read (staff.py);
3. members whose rows need sequential care ("set to", a debit that would cross zero, a key repeated in the batch,
   and every member when a support agent's limits hold) are resolved in posting order with the rulebook's own
   `decide` (loyalty/rules.py); every other row is accepted as it stands;
4. entry ids are drawn in posting order, tier moves are found with window functions over tiers/rules.py's SQL
   form, and the entries, tier changes, shortfalls, status moves and the members' figures are written with one
   statement each.
A preview (`dry_run`) runs steps 1-3 and the tier moves, and writes nothing: what it counts is what applying does.
"""

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from tiers.rules import tier_for_sql, tier_table

from .. import rules
from ..actors import SystemActor, actor_fields
from ..models import EntryKind, EntryStatus, NegativeBalancePolicy
from ..profiling import add as profile_add
from ..profiling import profiling, step
from ..rules import RELATIVE, SET_TO
from .batches import batch_expired_sql, batched_delta_sql, spent_through_sql, stage_batches
from .ledger import policy_or_default
from .staff import StaffPolicy, staff_policy
from .tables import execute as _exec
from .tables import fill_table
from .tables import rows as _rows

_STAGE = "ledger_stage"

# Row states in the staging table.
_NEW, _ALREADY, _REFUSED, _NOTHING, _SHORT_ONLY = 0, 1, 2, 3, 4

# Operations: post a new entry, or move a pending entry.
_POST, ACTIVATE, REJECT = "post", "activate", "reject"
# The stage's rows that make points active: a post of an active entry, or a pending entry moved to active.
_ACTIVE_ROWS = f"((op = '{_POST}' AND status = 'active') OR op = '{ACTIVATE}')"

_COLUMNS = (
    "seq",
    "op",
    "member_id",
    "points",
    "apply_type",
    "kind",
    "status",
    "counts",
    "reason",
    "idem_key",
    "hold_until",
    "earn_rule_id",
    "source",
    "source_ref",
    "at",
    "entry_id",
)
# New postings leave entry_id to the stage's default (see _entry_id_default).
_POST_COLUMNS = _COLUMNS[:-1]
MAX_REASON = 500


@dataclass
class Posting:
    """One posting. For apply_type "set", `points` is the target available balance. `counts_toward_lifetime`:
    None follows the kind (rules.counts_toward_lifetime); True/False is a staff adjustment's own choice.
    `source`/`source_ref`: this posting's own origin (an order's earning names its order), else the call's."""

    member_id: int
    points: int
    reason: str
    kind: str = EntryKind.ADJUSTMENT
    status: str = EntryStatus.ACTIVE
    apply_type: str = RELATIVE
    idempotency_key: str | None = None
    hold_until: datetime | None = None
    earn_rule_id: int | None = None
    counts_toward_lifetime: bool | None = None
    source: str | None = None
    source_ref: int | None = None
    # When the fact happened, for loads of history only (the demo, the benchmarks): the entry's time and, for an
    # active credit, when its batch became available. A member's postings carry it in order, after their batches.
    at: datetime | None = None

    def _row(self, seq: int) -> tuple:
        counts = rules.counts_toward_lifetime(self.kind, choice=self.counts_toward_lifetime)
        return (
            seq,
            _POST,
            self.member_id,
            self.points,
            self.apply_type,
            self.kind,
            self.status,
            counts,
            self.reason[:MAX_REASON],
            self.idempotency_key,
            self.hold_until,
            self.earn_rule_id,
            self.source,
            self.source_ref,
            self.at,
        )


@dataclass
class Move:
    """A pending entry made active (ACTIVATE) or rejected (REJECT), with its pending take-backs on a reject."""

    entry_id: int
    op: str
    reason: str


@dataclass
class PostingsQuery:
    """A SELECT whose rows are postings of one kind, with these named columns (any order, NULL where not used):
    seq (orders the rows; unique across the call), member_id, points, reason, idempotency_key, status, hold_until,
    earn_rule_id. `params` are the SELECT's own."""

    sql: str
    params: list
    kind: str
    counts_toward_lifetime: bool | None = None
    with_at: bool = False  # the SELECT also names `at` (Posting.at: history loads only)
    # No two rows of the SELECT share an idempotency key (a key made from the member, one row per member): a call
    # of this query alone skips the search for repeated keys. Were it wrong, the ledger's unique key would fail the
    # call's transaction: nothing posts twice either way.
    keys_unique: bool = False


@dataclass
class BulkResult:
    """What a bulk post did, by row (a row is named by its seq: its position for Posting lists)."""

    posted: int = 0
    already_applied: int = 0
    nothing_to_do: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    shortfalls: int = 0
    points_credited: int = 0
    points_debited: int = 0
    members_touched: int = 0
    tier_changes: int = 0
    tiers_up: int = 0
    tiers_down: int = 0
    posted_by_rule: dict[int, int] = field(default_factory=dict)
    members: list["MemberAfter"] = field(default_factory=list)


@dataclass
class MemberAfter:
    """A member's figures before and after the batch (a preview's rows)."""

    member_id: int
    email: str
    available_before: int
    available_after: int
    lifetime_before: int
    lifetime_after: int
    tier_before: int | None
    tier_after: int | None
    refusals: list[str] = field(default_factory=list)


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


# ---------------------------------------------------------------------------------------------------------------
# The staging table


def _entry_id_default() -> str:
    """On PostgreSQL, a new row of the stage draws its entry id from the ledger's own sequence as it is loaded, so ids
    follow posting order without a second pass (rows that end up not posted leave gaps, as rollbacks do)."""
    if not _is_postgres():
        return ""
    sequence = _rows("SELECT pg_get_serial_sequence('loyalty_ledgerentry', 'id')")[0][0]
    return f"DEFAULT nextval('{sequence}')"


@contextmanager
def _staging():
    """The staging table for the block, inside the caller's transaction: created on entry, dropped when the block
    succeeds. When the block fails the transaction rolls back and takes the table with it; a DROP in a transaction a
    database error has aborted would itself fail and hide that error (and the retry that depends on its kind)."""
    ts = "timestamptz" if _is_postgres() else "datetime"
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {_STAGE}")
        cur.execute(
            f"""CREATE TEMP TABLE {_STAGE} (
                seq bigint NOT NULL, op varchar(10) NOT NULL, member_id bigint NOT NULL, points bigint NOT NULL,
                apply_type varchar(10) NOT NULL, kind varchar(12) NOT NULL, status varchar(10) NOT NULL,
                counts boolean NOT NULL, reason text NOT NULL, idem_key text, hold_until {ts},
                earn_rule_id bigint, source varchar(10), source_ref bigint, reverses_id bigint, at {ts},
                entry_id bigint {_entry_id_default()},
                state smallint NOT NULL DEFAULT 0, shortfall bigint NOT NULL DEFAULT 0, refusal text)"""
        )
    yield
    _exec(f"DROP TABLE IF EXISTS {_STAGE}")


def _fill(postings=(), queries=()) -> None:
    postings = list(postings)
    posts = [(i, p) for i, p in enumerate(postings) if isinstance(p, Posting)]
    moves = [(i, p) for i, p in enumerate(postings) if isinstance(p, Move)]
    if len(posts) + len(moves) != len(postings):
        raise TypeError("postings must be Posting or Move")
    if posts:
        fill_table(_STAGE, _POST_COLUMNS, (p._row(i) for i, p in posts))
    if moves:
        _exec("DROP TABLE IF EXISTS ledger_stage_moves")
        _exec("CREATE TEMP TABLE ledger_stage_moves (seq bigint, entry_id bigint, op varchar(10), reason text)")
        fill_table(
            "ledger_stage_moves",
            ("seq", "entry_id", "op", "reason"),
            ((i, m.entry_id, m.op, m.reason[:MAX_REASON]) for i, m in moves),
        )
        _stage_moves("SELECT seq, entry_id, op, reason FROM ledger_stage_moves", [])
        _exec("DROP TABLE ledger_stage_moves")
    for query in queries:
        _stage_query(query)


def _stage_query(query: PostingsQuery) -> None:
    counts = rules.counts_toward_lifetime_sql(f"'{query.kind}'", choice=query.counts_toward_lifetime)
    # A NULL of the caller's SELECT has no type on PostgreSQL: say which.
    hold_until = "CAST(p.hold_until AS timestamptz)" if _is_postgres() else "p.hold_until"
    at = ("CAST(p.at AS timestamptz)" if _is_postgres() else "p.at") if query.with_at else "NULL"
    _exec(
        f"""INSERT INTO {_STAGE} (seq, op, member_id, points, apply_type, kind, status, counts, reason, idem_key,
                hold_until, earn_rule_id, at)
            SELECT p.seq, '{_POST}', p.member_id, p.points, '{RELATIVE}', '{query.kind}', p.status, {counts},
                   SUBSTR(p.reason, 1, {MAX_REASON}), p.idempotency_key, {hold_until}, CAST(p.earn_rule_id AS bigint),
                   {at}
            FROM ({query.sql}) p
            ORDER BY p.seq""",  # rows draw their entry ids as they are loaded: in posting order, none to deal again
        query.params,
    )


def _stage_moves(select: str, params) -> None:
    """Stage status moves of pending entries from a SELECT of (seq, entry_id, op, reason); a reject takes the
    entry's pending take-backs with it (seq after the entry's, in entry order)."""
    _exec(
        f"""INSERT INTO {_STAGE} (seq, op, member_id, points, apply_type, kind, status, counts, reason, entry_id)
            SELECT m.seq, m.op, e.member_id, e.points, '{RELATIVE}', e.kind, e.status, e.counts_toward_lifetime,
                   m.reason, e.id
            FROM ({select}) m JOIN loyalty_ledgerentry e ON e.id = m.entry_id""",
        params,
    )
    # Take-backs of a rejected earning go first, as on the single path (seq below every other row's, in entry order),
    # once each even when the batch rejects the earning twice (the second reject is refused): the first's reason.
    _exec(
        f"""INSERT INTO {_STAGE} (seq, op, member_id, points, apply_type, kind, status, counts, reason, entry_id)
            SELECT t.id - (SELECT MAX(id) FROM loyalty_ledgerentry) - 1, '{REJECT}', t.member_id,
                   t.points, '{RELATIVE}', t.kind, t.status, t.counts_toward_lifetime,
                   (SELECT s.reason FROM {_STAGE} s WHERE s.op = '{REJECT}' AND s.entry_id = t.takes_back_id
                    ORDER BY s.seq LIMIT 1), t.id
            FROM loyalty_ledgerentry t
            WHERE t.takes_back_id IN (SELECT s.entry_id FROM {_STAGE} s JOIN loyalty_ledgerentry e ON e.id = s.entry_id
                                      WHERE s.op = '{REJECT}' AND e.status = 'pending')
              AND t.status = 'pending' AND NOT EXISTS (SELECT 1 FROM {_STAGE} x WHERE x.entry_id = t.id)"""
    )


def _keep_take_backs_of_rejected_earnings() -> None:
    """A take-back staged with its earning's reject moves only if that reject does: when the batch refuses it (an
    earlier row approved the earning), the single path leaves the take-back pending, and so does this."""
    _exec(
        f"""DELETE FROM {_STAGE} WHERE op = '{REJECT}' AND seq < 0 AND NOT EXISTS (
                SELECT 1 FROM {_STAGE} s JOIN loyalty_ledgerentry t ON t.takes_back_id = s.entry_id
                WHERE t.id = {_STAGE}.entry_id AND s.op = '{REJECT}' AND s.seq >= 0 AND s.state = {_NEW})"""
    )


# ---------------------------------------------------------------------------------------------------------------
# Posting


def entries_post_bulk(
    *,
    postings=(),
    queries=(),
    actor,
    source: str,
    action: str | None = None,
    source_ref: int | None = None,
    policy: str | None = None,
    keys_new_unless_prefix: str | None = None,
    dry_run: bool = False,
    members_locked: bool = False,
) -> BulkResult:
    """Post many entries at once: the same rules, keys, limits and tiers as posting them one by one, in order.

    postings: Posting and Move objects (a row's seq is its position); queries: PostingsQuery objects.
    action: the staff action a user's call stands for (staff.ACTION_PERMISSIONS; required with a staff actor). A
    user without its permission is refused with StaffRefused; a support agent's rows beyond the limits are refused
    by row. policy: the negative-balance policy (the program's by default).
    keys_new_unless_prefix: the caller knows every idempotency key without this prefix is new (an import's own row
    keys before any of its chunks committed), which saves a million index lookups; were it wrong, the ledger's
    unique key would fail the transaction, so nothing can apply twice either way.
    dry_run: compute everything and write nothing (a preview), with `members` filled.
    members_locked: the caller's transaction already holds the row locks of every member of the call, taken in id
    order before its queries read the figures they post from (the expiry run, whose amounts are what is due under
    those figures); the call does not lock them again.
    """
    policy = policy_or_default(policy)
    postings, queries = list(postings), list(queries)
    commits = not connection.in_atomic_block  # the caller's transaction otherwise: its commit is the caller's step
    with transaction.atomic():
        _plan_for_cached_indexes()
        with _staging():
            with step("stage"):
                _fill(postings, queries)
            result = _apply(
                keys_may_repeat=bool(postings) or len(queries) != 1 or not queries[0].keys_unique,
                # Each source loads its posts in posting order (_stage_query, fill_table); two could interleave.
                ids_in_order=(1 if postings else 0) + len(queries) <= 1,
                actor=actor,
                source=source,
                source_ref=source_ref,
                policy=policy,
                action=action,
                keys_new_unless_prefix=keys_new_unless_prefix,
                dry_run=dry_run,
                members_locked=members_locked,
            )
        committing = time.perf_counter() if commits and profiling() else None
    if committing is not None:
        profile_add("checks", time.perf_counter() - committing)
    return result


def _plan_for_cached_indexes() -> None:
    """Let this transaction's planner price an index probe as what it is here, a read from memory, and run without JIT.

    With PostgreSQL's default random_page_cost (4, a spinning disk's), the batch's lookups on the ledger (keys
    already posted, a member's earlier earning, an order's) are planned as a hash over the whole ledger, read in full
    for every batch however small: a range of 2,000 members read 450,000 entries twice (0.5 s), and the cost grows
    with the ledger. 1.1 is the usual figure for SSDs and for indexes held in memory, as the ledger's key index is.
    """
    if _is_postgres():
        _exec("SET LOCAL random_page_cost = 1.1")
        # The stage's and the later statements' cost estimates pass the JIT threshold on a big batch, and compiling
        # each one takes about half a second, more than running most of them (measured: 3.6 s of JIT in a 7.8 s
        # SELECT over 280,000 orders); the transaction runs them without, its stage included.
        _exec("SET LOCAL jit = off")
        # A big batch sorts and hashes its stage (by member, by posting order) several times; at the default 4 MB
        # of work memory each of those over 200,000 rows spills to disk. One backend per batch: more is safe.
        _exec("SET LOCAL work_mem = '64MB'")


def _apply(
    *,
    actor,
    source,
    source_ref,
    policy,
    action,
    keys_new_unless_prefix=None,
    dry_run=False,
    members_locked=False,
    keys_may_repeat=True,
    ids_in_order=False,
) -> BulkResult:
    with step("stage"):
        if _is_postgres():
            _exec("SET LOCAL jit = off")  # as set at the transaction's start (a caller's transaction too)
        else:
            # SQLite groups the keys by it (a repeated key); PostgreSQL hashes them, and a big stage's index cost
            # more to build (0.18 s at 200,000 rows) than anything read through it.
            _exec(f"CREATE INDEX IF NOT EXISTS {_STAGE}_key ON {_STAGE} (idem_key)")
        # Built once the stage is loaded (a sort), not row by row as it loads: 0.1 s less at 200,000 rows. Unique:
        # a call whose postings share a seq fails here, before anything is written.
        _exec(f"CREATE UNIQUE INDEX IF NOT EXISTS {_STAGE}_seq ON {_STAGE} (seq)")
        _exec(f"CREATE INDEX IF NOT EXISTS {_STAGE}_member ON {_STAGE} (member_id, seq)")
        if _is_postgres():
            # A temporary table has no statistics until analysed: the planner would take a big stage for a few
            # hundred rows and look members up one index probe at a time where one pass over them is cheaper.
            _exec(f"ANALYZE {_STAGE}")
    with step("resolve_keys"):
        _use_live_keys()
        if not members_locked:  # the caller holds every member's row: they exist
            _mark_unknown_members()
        _mark_already_applied(keys_new_unless_prefix)
    if not dry_run and not members_locked:
        with step("lock"):
            _lock_members()
    # Taken under the members' locks: a batch opened now starts its clock after every batch of these members that
    # committed before (their lines stay in the order their batches became available).
    now = timezone.now()
    with step("resolve"):
        staff = staff_policy(actor, action)
        moves, sets = _staged_moves_and_sets()
        if moves:
            _mark_moves_no_longer_pending()
        needing_order = _members_needing_order(policy, staff, keys_may_repeat=keys_may_repeat, moves=moves, sets=sets)
        _resolve_sequentially(needing_order, policy, staff)
        if moves:
            _keep_take_backs_of_rejected_earnings()
        table = tier_table()
    if dry_run:
        with step("preview"):
            result = _summarise()
            result.tiers_up, result.tiers_down = _count_tier_moves(table)
            result.members = _members_after(table)
        return result
    with step("entries"):
        _assign_entry_ids(ids_in_order)
        written = _Written.count()
    with step("tiers"):
        tier_changes = _write_tier_changes(now, table) if written.lifetime_rows else 0
    with step("entries"):
        with _streamed_groups():
            _insert_entries(actor=actor, source=source, source_ref=source_ref, now=now, written=written)
        if written.moves:
            _move_statuses(actor=actor, now=now)
    if written.credits:
        stage_batches(stage=_STAGE, new_state=_NEW, now=now, active_rows=_ACTIVE_ROWS)
    with step("entries"):
        if written.shortfalls:
            _insert_shortfalls(now)
        if written.reversals:
            _disable_reversed_coupons(now)
    with step("balances"):
        _update_balances_and_tiers(table, written.one_row)
    with step("summary"):
        staff.record()
        result = _summarise(members_touched=written.members)
    result.tier_changes = tier_changes
    return result


def _staged_moves_and_sets() -> tuple[bool, bool]:
    """Whether the stage holds status moves, and "set to" rows (one pass): the checks that only they need are
    skipped when there are none (each is a pass over a big stage)."""
    moves, sets = _rows(
        f"""SELECT COALESCE(MAX(CASE WHEN op <> '{_POST}' THEN 1 ELSE 0 END), 0),
                   COALESCE(MAX(CASE WHEN apply_type = '{SET_TO}' THEN 1 ELSE 0 END), 0)
            FROM {_STAGE} WHERE state = {_NEW}"""
    )[0]
    return bool(moves), bool(sets)


@dataclass(frozen=True)
class _Written:
    """What the resolved stage will write, counted in one pass, so a write step with nothing to write is skipped
    (each is a pass over the stage: 30 ms at 200,000 rows)."""

    rows: int  # new rows
    members: int  # members with new rows
    moves: int  # status moves
    lifetime_rows: int  # rows that move lifetime (and may move a tier)
    credits: int  # rows that open a batch
    shortfalls: int  # rows that record a shortfall (new, or a shortfall alone)
    reversals: int  # rows that reverse an entry (new, or a shortfall alone): a redemption's coupon goes
    expirations: int  # new expirations (each records its span of the member's line)

    @property
    def one_row(self) -> bool:
        """No member has more than one new row: an expiration's span and the members' figures need no running sum
        or grouping (the expiry run's case)."""
        return self.rows == self.members

    @classmethod
    def count(cls) -> "_Written":
        new = f"state = {_NEW}"
        figures = _rows(
            f"""SELECT SUM(CASE WHEN {new} THEN 1 ELSE 0 END),
                       COUNT(DISTINCT CASE WHEN {new} THEN member_id END),
                       SUM(CASE WHEN {new} AND op <> '{_POST}' THEN 1 ELSE 0 END),
                       SUM(CASE WHEN {_lifetime_rows_filter(_STAGE)} THEN 1 ELSE 0 END),
                       SUM(CASE WHEN {new} AND points > 0 AND {_ACTIVE_ROWS} THEN 1 ELSE 0 END),
                       SUM(CASE WHEN shortfall > 0 THEN 1 ELSE 0 END),
                       SUM(CASE WHEN reverses_id IS NOT NULL THEN 1 ELSE 0 END),
                       SUM(CASE WHEN {new} AND kind = '{EntryKind.EXPIRATION}' THEN 1 ELSE 0 END)
                FROM {_STAGE} WHERE state IN ({_NEW}, {_SHORT_ONLY})"""
        )[0]
        return cls(*(int(f or 0) for f in figures))


def _use_live_keys() -> None:
    """Facts freed by an undo are posted under their next generation's key (loyalty.keys)."""
    if _rows("SELECT EXISTS (SELECT 1 FROM loyalty_freedkey)")[0][0]:
        _exec(
            f"""UPDATE {_STAGE} SET idem_key = (SELECT f.live FROM loyalty_freedkey f WHERE f.key = {_STAGE}.idem_key)
                WHERE idem_key IN (SELECT key FROM loyalty_freedkey)"""
        )


def _mark_unknown_members() -> None:
    _exec(
        f"""UPDATE {_STAGE} SET state = {_REFUSED}, refusal = 'Member #' || member_id || ' does not exist.'
            WHERE NOT EXISTS (SELECT 1 FROM loyalty_member m WHERE m.id = {_STAGE}.member_id)"""
    )


def _mark_already_applied(keys_new_unless_prefix: str | None) -> None:
    look_up = "1 = 1"
    params = []
    if keys_new_unless_prefix is not None:
        look_up = "SUBSTR(idem_key, 1, %s) = %s"
        params = [len(keys_new_unless_prefix), keys_new_unless_prefix]
    # One statement per table (joined by OR, the two lookups became a hashed subplan that read every key of the
    # ledger), and one probe of the table's key index per staged key: the cost follows the batch, not the ledger.
    # Left to itself, PostgreSQL turns a big batch's lookup into a hash join that reads every key the ledger
    # holds (0.34 s against 0.13 s of probes for 200,000 keys over 2,000,000 entries; 2.8 s against 0.65 s for
    # 1,000,000 over 10,000,000). An OFFSET keeps the EXISTS a probe per row (the planner does not turn such a
    # subquery into a join); SQLite probes anyway. Shortfalls are few: a hash of them all is the cheaper lookup.
    for table, probe in (("loyalty_ledgerentry", " OFFSET 0" if _is_postgres() else ""), ("loyalty_shortfall", "")):
        _exec(
            f"""UPDATE {_STAGE} SET state = {_ALREADY}
                WHERE state = {_NEW} AND idem_key IS NOT NULL AND ({look_up}) AND
                    EXISTS (SELECT 1 FROM {table} x WHERE x.idempotency_key = {_STAGE}.idem_key{probe})""",
            params,
        )


def members_lock(where: str) -> None:
    """Lock the members matching `where` (an SQL condition over loyalty_member's columns) in id order, the one order
    every bulk caller takes them in, so two callers never wait on each other in a circle. Counted where they are
    locked: no id travels to Python. SQLite's transaction holds the whole database instead."""
    if _is_postgres():
        _rows(f"SELECT COUNT(*) FROM (SELECT id FROM loyalty_member WHERE {where} ORDER BY id FOR UPDATE) locked")


def _lock_members() -> None:
    members_lock(f"id IN (SELECT member_id FROM {_STAGE} WHERE state = {_NEW})")


def _mark_moves_no_longer_pending() -> None:
    """Status moves are checked again under the members' locks: the entry may have moved since it was chosen."""
    refusal = rules.not_pending_refusal_sql(entry_id="e.id", status="e.status")
    _exec(
        f"""UPDATE {_STAGE} SET state = {_REFUSED},
                refusal = (SELECT {refusal} FROM loyalty_ledgerentry e WHERE e.id = {_STAGE}.entry_id)
            WHERE state = {_NEW} AND op <> '{_POST}' AND NOT EXISTS (
                SELECT 1 FROM loyalty_ledgerentry e WHERE e.id = {_STAGE}.entry_id AND e.status = 'pending')"""
    )


def _members_needing_order(
    policy: str, staff: StaffPolicy, *, keys_may_repeat: bool = True, moves: bool = True, sets: bool = True
) -> list[int]:
    """Members whose rows cannot all be accepted as they stand: "set to", a debit crossing zero, a repeated key, an
    entry moved twice; all of them when a support agent's limits hold (each row counts toward a running total).
    keys_may_repeat, moves, sets: False where the call's keys cannot repeat, or the stage holds no status moves or
    no "set to" rows (nothing to look for).

    The running-balance window only looks at members with a debit in the batch: credits alone never cross zero.
    """
    if staff.limited:
        return [r[0] for r in _rows(f"SELECT DISTINCT member_id FROM {_STAGE} WHERE state = {_NEW} ORDER BY 1")]
    # Each part is a SELECT of member ids; a part with nothing to look for is left out.
    parts = []
    if sets:
        parts.append(f"SELECT member_id FROM {_STAGE} WHERE state = {_NEW} AND apply_type = '{SET_TO}'")
    if policy != NegativeBalancePolicy.ALLOW:
        parts.append(f"""
            SELECT member_id FROM (
                SELECT s.member_id, s.op, s.status, s.points,
                       m.available_points + SUM(CASE WHEN s.status = 'active' OR s.op = '{ACTIVATE}'
                                                     THEN s.points ELSE 0 END)
                           OVER (PARTITION BY s.member_id ORDER BY s.seq ROWS UNBOUNDED PRECEDING) AS balance_after
                FROM {_STAGE} s JOIN loyalty_member m ON m.id = s.member_id
                WHERE s.state = {_NEW} AND s.member_id IN (
                    SELECT member_id FROM {_STAGE}
                    WHERE state = {_NEW} AND op = '{_POST}' AND status = 'active' AND points < 0)) x
            WHERE op = '{_POST}' AND status = 'active' AND points < 0 AND balance_after < 0""")
    if keys_may_repeat:
        parts.append(f"""
            SELECT member_id FROM {_STAGE} WHERE state = {_NEW} AND idem_key IN (
                SELECT idem_key FROM {_STAGE} WHERE state = {_NEW} AND idem_key IS NOT NULL
                GROUP BY idem_key HAVING COUNT(*) > 1)""")
    if moves:
        parts.append(f"""
            SELECT member_id FROM {_STAGE} WHERE state = {_NEW} AND op <> '{_POST}' AND entry_id IN (
                SELECT entry_id FROM {_STAGE} WHERE state = {_NEW} AND op <> '{_POST}'
                GROUP BY entry_id HAVING COUNT(*) > 1)""")
    if not parts:
        return []
    rows = _rows(" UNION ".join(parts))
    return sorted(r[0] for r in rows)


def _resolve_sequentially(member_ids: list[int], policy: str, staff: StaffPolicy) -> None:
    """Resolve the rows of these members in posting order, with the rulebook's `decide`, as the single path does."""
    if not member_ids:
        return
    _exec("DROP TABLE IF EXISTS ledger_stage_members")
    _exec("CREATE TEMP TABLE ledger_stage_members (member_id bigint PRIMARY KEY)")
    fill_table("ledger_stage_members", ("member_id",), ((m,) for m in member_ids))
    balances = {
        mid: [available, email]
        for mid, available, email in _rows(
            """SELECT id, available_points, email FROM loyalty_member
               WHERE id IN (SELECT member_id FROM ledger_stage_members)"""
        )
    }
    rows = _rows(
        f"""SELECT seq, member_id, op, points, apply_type, status, kind, idem_key, entry_id FROM {_STAGE}
            WHERE state = {_NEW} AND member_id IN (SELECT member_id FROM ledger_stage_members)
            ORDER BY seq"""
    )
    seen_keys: set[str] = set()
    moved: dict[int, str] = {}  # entries a move of this batch has moved already, and where to
    decisions = [
        (seq, *_decide_row(balances[member_id], row, seen_keys, moved, policy, staff, with_earning=seq < 0))
        for seq, member_id, *row in rows
    ]
    _exec("DROP TABLE IF EXISTS ledger_stage_decisions")
    _exec(
        "CREATE TEMP TABLE ledger_stage_decisions "
        "(seq bigint PRIMARY KEY, state smallint, points bigint, shortfall bigint, refusal text)"
    )
    fill_table("ledger_stage_decisions", ("seq", "state", "points", "shortfall", "refusal"), decisions)
    _exec(
        f"""UPDATE {_STAGE} SET state = d.state, points = d.points, shortfall = d.shortfall, refusal = d.refusal,
                apply_type = '{RELATIVE}'
            FROM ledger_stage_decisions d WHERE {_STAGE}.seq = d.seq"""
    )
    _exec("DROP TABLE ledger_stage_decisions")
    _exec("DROP TABLE ledger_stage_members")


def _decide_row(balance, row, seen_keys, moved, policy, staff, with_earning=False):
    """One row's fate, given the member's running balance: (state, points, shortfall, refusal).

    with_earning: a pending take-back rejected together with its earning (staged below every other row)."""
    op, points, apply_type, status, kind, key, entry_id = row
    available, email = balance
    if key and key in seen_keys:
        return _ALREADY, points, 0, None
    if op != _POST and entry_id in moved:  # an earlier row of the batch moved it: as the single path finds it
        return _REFUSED, points, 0, rules.not_pending_refusal(entry_id=entry_id, status=moved[entry_id])
    if op != _POST:
        # A take-back rejected with its earning moves with it: the earning's points are what the staff member moved.
        if not with_earning:
            if refusal := staff.refusal(points):
                return _REFUSED, points, 0, refusal
            staff.add(points)
        moved[entry_id] = EntryStatus.ACTIVE if op == ACTIVATE else EntryStatus.REJECTED
        if op == ACTIVATE:
            balance[0] += points
        return _NEW, points, 0, None
    what = "reverse" if kind == EntryKind.REVERSAL else "debit"
    decision = rules.decide(
        available=available, points=points, apply_type=apply_type, status=status, policy=policy, what=what, email=email
    )
    if decision.nothing:
        return _NOTHING, points, 0, None
    if refusal := staff.refusal(decision.change) or decision.refusal:
        return _REFUSED, decision.change, 0, refusal
    staff.add(decision.change)
    if status == EntryStatus.ACTIVE:
        balance[0] += decision.posted
    if key:
        seen_keys.add(key)
    if decision.posted == 0:
        return _SHORT_ONLY, decision.change, decision.shortfall, None
    return _NEW, decision.posted, decision.shortfall, None


def _assign_entry_ids(ids_in_order: bool) -> None:
    """Give every new entry its id in posting order, so the ledger reads as if posted one by one. ids_in_order: one
    source staged every post, in posting order, so the ids it drew follow it (no pass over the stage to check)."""
    if _is_postgres():
        # Every post drew its id as it loaded (_entry_id_default: no staging names the column for a post; one that
        # did with NULL would fail the ledger's insert, not post out of order).
        if not ids_in_order:
            _entry_ids_in_posting_order()
        return
    # SQLite: the transaction holds the database's write lock, so the next ids are ours to take.
    top = _rows(
        """SELECT MAX(v) FROM (SELECT MAX(id) AS v FROM loyalty_ledgerentry
           UNION ALL SELECT seq FROM sqlite_sequence WHERE name = 'loyalty_ledgerentry')"""
    )[0][0]
    _exec(
        f"""UPDATE {_STAGE} SET entry_id = x.id FROM (
                SELECT seq, ROW_NUMBER() OVER (ORDER BY seq) + %s AS id
                FROM {_STAGE} WHERE state = {_NEW} AND op = '{_POST}') x
            WHERE {_STAGE}.seq = x.seq""",
        [top or 0],
    )


def _entry_ids_in_posting_order() -> None:
    """Rows draw their ids as each source loads them, in its own posting order; two sources of one call (a list of
    postings and queries, or several queries) may interleave: found by one pass over the stage, such ids are dealt
    out again, the smallest to the earliest posting, so the new entries keep the single path's order."""
    post = f"op = '{_POST}' AND entry_id IS NOT NULL"
    disordered = _rows(
        f"""SELECT EXISTS (SELECT 1 FROM (SELECT entry_id, LAG(entry_id) OVER (ORDER BY seq) AS before
                                          FROM {_STAGE} WHERE {post}) x WHERE x.before > x.entry_id)"""
    )[0][0]
    if disordered:
        _exec(
            f"""UPDATE {_STAGE} SET entry_id = r.id FROM (
                    SELECT s.seq, i.entry_id AS id
                    FROM (SELECT seq, ROW_NUMBER() OVER (ORDER BY seq) AS n FROM {_STAGE} WHERE {post}) s
                    JOIN (SELECT entry_id, ROW_NUMBER() OVER (ORDER BY entry_id) AS n FROM {_STAGE} WHERE {post}) i
                      ON i.n = s.n) r
                WHERE {_STAGE}.seq = r.seq"""
        )


def _lifetime_rows_filter(alias: str = "s") -> str:
    return (
        f"{alias}.state = {_NEW} AND {alias}.counts AND "
        f"(({alias}.op = '{_POST}' AND {alias}.status = 'active') OR {alias}.op = '{ACTIVATE}')"
    )


def _members_whose_tier_may_move(table) -> str:
    """Members whose tier can move within the batch: a debit makes the path non-monotonic; otherwise the tier can
    only move if the tier at the end (or already the tier at the start) differs from the one on record."""
    return f"""
        SELECT a.member_id FROM (
            SELECT s.member_id, SUM(s.points) AS total, MIN(s.points) AS lowest
            FROM {_STAGE} s WHERE {_lifetime_rows_filter()} GROUP BY s.member_id) a
        JOIN loyalty_member m ON m.id = a.member_id
        WHERE a.lowest < 0
           OR COALESCE(m.tier_id, -1) <> COALESCE({tier_for_sql("m.lifetime_points + a.total", table)}, -1)
           OR COALESCE(m.tier_id, -1) <> COALESCE({tier_for_sql("m.lifetime_points", table)}, -1)"""


def _tier_moves_select(table) -> str:
    """Every entry of the batch that moves its member to another tier: member_id, from tier, to tier, lifetime after,
    entry_id, reason, seq, and whether it is a move up (by threshold)."""
    thresholds = {i: t for t, i in table}
    rank = " ".join(f"WHEN {{col}} = {int(i)} THEN {int(t)}" for i, t in thresholds.items())

    def threshold(col: str) -> str:
        return f"(CASE {rank.format(col=col)} ELSE -1 END)" if rank else "-1"

    return f"""
        SELECT member_id, prev_tier, tier_after, lifetime_after, entry_id, reason, seq,
               CASE WHEN {threshold("tier_after")} > {threshold("prev_tier")} THEN 1 ELSE 0 END AS up FROM (
            SELECT member_id, seq, entry_id, reason, lifetime_after, tier_after,
                   CASE WHEN rn = 1 THEN tier0
                        ELSE LAG(tier_after) OVER (PARTITION BY member_id ORDER BY seq) END AS prev_tier
            FROM (
                SELECT member_id, seq, entry_id, reason, lifetime_after, tier0, rn,
                       {tier_for_sql("lifetime_after", table)} AS tier_after
                FROM (
                    SELECT s.member_id, s.seq, s.entry_id, SUBSTR(s.reason, 1, 255) AS reason, m.tier_id AS tier0,
                           m.lifetime_points + SUM(s.points) OVER w AS lifetime_after,
                           ROW_NUMBER() OVER w AS rn
                    FROM {_STAGE} s JOIN loyalty_member m ON m.id = s.member_id
                    WHERE {_lifetime_rows_filter()} AND s.member_id IN ({_members_whose_tier_may_move(table)})
                    WINDOW w AS (PARTITION BY s.member_id ORDER BY s.seq ROWS UNBOUNDED PRECEDING)
                ) a
            ) b
        ) c
        WHERE COALESCE(prev_tier, -1) <> COALESCE(tier_after, -1)"""


def _write_tier_changes(now, table) -> int:
    """One TierChange for every entry that moves its member to another tier, as the single path records them."""
    return _exec(
        f"""INSERT INTO tiers_tierchange
                (member_id, from_tier_id, to_tier_id, lifetime_points, entry_id, reason, created_at)
            SELECT member_id, prev_tier, tier_after, lifetime_after, entry_id, reason, %s
            FROM ({_tier_moves_select(table)}) moves ORDER BY seq""",
        [now],
    )


def _count_tier_moves(table) -> tuple[int, int]:
    """Members whose tier ends higher and lower than it starts (a preview's figures): the tier on record against
    the tier the batch's end lifetime gives, where lifetime moves (as _update_balances_and_tiers writes it; a
    member who goes down and up again within the batch counts by where they end)."""
    thresholds = {i: t for t, i in table}
    rank = " ".join(f"WHEN {{col}} = {int(i)} THEN {int(t)}" for i, t in thresholds.items())

    def threshold(col: str) -> str:
        return f"(CASE {rank.format(col=col)} ELSE -1 END)" if rank else "-1"

    after = tier_for_sql("m.lifetime_points + d.lifetime", table)
    ups, downs = _rows(
        f"""SELECT COALESCE(SUM(CASE WHEN {threshold("tier_after")} > {threshold("tier_before")} THEN 1 ELSE 0 END), 0),
                   COALESCE(SUM(CASE WHEN {threshold("tier_after")} < {threshold("tier_before")} THEN 1 ELSE 0 END), 0)
            FROM (SELECT m.tier_id AS tier_before, {after} AS tier_after
                  FROM ({_balance_deltas()}) d JOIN loyalty_member m ON m.id = d.member_id
                  WHERE d.moves_lifetime = 1) x"""
    )[0]
    return int(ups), int(downs)


def _members_after(table, limit: int = 200) -> list[MemberAfter]:
    """The first members of the batch with their figures before and after, and their refused rows."""
    deltas = _balance_deltas()
    rows = _rows(
        f"""SELECT m.id, m.email, m.available_points, m.available_points + COALESCE(d.available, 0),
                   m.lifetime_points, m.lifetime_points + COALESCE(d.lifetime, 0), m.tier_id,
                   {tier_for_sql("m.lifetime_points + COALESCE(d.lifetime, 0)", table)}
            FROM loyalty_member m
            JOIN (SELECT DISTINCT member_id FROM {_STAGE}) x ON x.member_id = m.id
            LEFT JOIN ({deltas}) d ON d.member_id = m.id
            ORDER BY m.id LIMIT %s""",
        [limit],
    )
    members = {r[0]: MemberAfter(*r) for r in rows}
    for member_id, refusal in _rows(
        f"SELECT member_id, refusal FROM {_STAGE} WHERE state = {_REFUSED} AND member_id IN "
        f"(SELECT member_id FROM {_STAGE} GROUP BY member_id ORDER BY member_id LIMIT %s) ORDER BY seq",
        [limit],
    ):
        if member_id in members:
            members[member_id].refusals.append(refusal)
    for member in members.values():
        if member.lifetime_before == member.lifetime_after and member.tier_before is not None:
            member.tier_after = member.tier_before  # the tier only follows a change of lifetime
    return list(members.values())


def _insert_entries(*, actor, source: str, source_ref: int | None, now, written: "_Written") -> None:
    who = actor_fields(actor)
    # An expiration records where it ends on its member's line of batches (loyalty.services.batches).
    spent, spent_join = "NULL", ""
    if written.expirations:
        spent, spent_join = spent_through_sql(
            stage=_STAGE, new_state=_NEW, active_rows=_ACTIVE_ROWS, one_row=written.one_row
        )
    _exec(
        f"""INSERT INTO loyalty_ledgerentry (id, member_id, points, kind, status, counts_toward_lifetime, reason,
                actor_user_id, actor_system, source, source_ref, earn_rule_id, reverses_id, idempotency_key,
                hold_until, created_at, spent_through)
            SELECT s.entry_id, s.member_id, s.points, s.kind, s.status, s.counts, s.reason, %s, %s,
                   COALESCE(s.source, %s), COALESCE(s.source_ref, %s), s.earn_rule_id, s.reverses_id, s.idem_key,
                   CASE WHEN s.status = 'pending' THEN s.hold_until END, COALESCE(s.at, %s), {spent}
            FROM {_STAGE} s {spent_join} WHERE s.state = {_NEW} AND s.op = '{_POST}' ORDER BY s.seq""",
        [who["actor_user_id"], who["actor_system"], source, source_ref, now],
    )


def _move_statuses(*, actor, now) -> None:
    """The one permitted change of entries: pending -> active (activate) or rejected (reject)."""
    # Called only when the batch moves something (_Written.moves): with a ledger's pending entries on one side and
    # a large staging table on the other, PostgreSQL chose to scan the staging table once per pending entry (minutes).
    by = None if isinstance(actor, SystemActor) else actor.pk
    _exec(
        f"""UPDATE loyalty_ledgerentry SET status = x.new_status, status_changed_at = %s, status_changed_by_id = %s
            FROM (SELECT entry_id, CASE WHEN op = '{ACTIVATE}' THEN 'active' ELSE 'rejected' END AS new_status
                  FROM {_STAGE} WHERE state = {_NEW} AND op <> '{_POST}') x
            WHERE loyalty_ledgerentry.id = x.entry_id AND loyalty_ledgerentry.status = 'pending'""",
        [now, by],
    )


def _insert_shortfalls(now) -> None:
    _exec(
        f"""INSERT INTO loyalty_shortfall (member_id, points, reason, entry_id, posted_entry_id, reversal_of_id,
                idempotency_key, created_at)
            SELECT member_id, shortfall, reason, reverses_id,
                   CASE WHEN state = {_NEW} THEN entry_id END,
                   CASE WHEN state = {_SHORT_ONLY} THEN reverses_id END,
                   CASE WHEN state = {_SHORT_ONLY} THEN idem_key END, %s
            FROM {_STAGE} WHERE shortfall > 0 AND state IN ({_NEW}, {_SHORT_ONLY}) ORDER BY seq""",
        [now],
    )


def _disable_reversed_coupons(now) -> None:
    """Reversing a redemption gives its points back and disables its coupon in the same transaction."""
    _exec(
        f"""UPDATE loyalty_coupon SET disabled = TRUE, disabled_at = %s
            WHERE disabled = FALSE AND redemption_entry_id IN (
                SELECT reverses_id FROM {_STAGE} WHERE reverses_id IS NOT NULL AND state IN ({_NEW}, {_SHORT_ONLY}))""",
        [now],
    )


def _balance_deltas(one_row: bool = False) -> str:
    """Per member of the batch: the change of available, pending and lifetime, and whether lifetime moved.
    one_row: no member has more than one row (_Written.one_row): each row is its member's change as it
    stands, with no grouping (a big batch's grouping held five sums for every member: 0.3 s at 200,000)."""

    def total(expression: str, how: str = "SUM") -> str:
        return expression if one_row else f"{how}({expression})"

    lifetime_rows = _lifetime_rows_filter(_STAGE)
    pending = (
        f"CASE WHEN op = '{_POST}' AND status = 'pending' THEN points WHEN op <> '{_POST}' THEN -points ELSE 0 END"
    )
    return f"""
        SELECT member_id,
            {total(f"CASE WHEN {_ACTIVE_ROWS} THEN points ELSE 0 END")} AS available,
            {total(pending)} AS pending,
            {total(f"CASE WHEN {lifetime_rows} THEN points ELSE 0 END")} AS lifetime,
            {total(f"CASE WHEN {lifetime_rows} THEN 1 ELSE 0 END", "MAX")} AS moves_lifetime,
            {batched_delta_sql(_ACTIVE_ROWS, summed=not one_row)} AS batched
        FROM {_STAGE} WHERE state = {_NEW} {"" if one_row else "GROUP BY member_id"}"""


def _update_balances_and_tiers(table, one_row: bool = False) -> None:
    """Move the members' cached figures, and their tier where lifetime moved, with one write per member."""
    new_lifetime = "loyalty_member.lifetime_points + d.lifetime"
    with _streamed_groups():
        _exec(
            f"""UPDATE loyalty_member SET
                    available_points = loyalty_member.available_points + d.available,
                    pending_points = loyalty_member.pending_points + d.pending,
                    lifetime_points = {new_lifetime},
                    batched_points = loyalty_member.batched_points + d.batched,
                    tier_id = CASE WHEN d.moves_lifetime = 1 THEN {tier_for_sql(new_lifetime, table)}
                                   ELSE loyalty_member.tier_id END
                FROM ({_balance_deltas(one_row)}) d
                WHERE loyalty_member.id = d.member_id"""
        )


@contextmanager
def _streamed_groups():
    """Within the block, PostgreSQL groups the stage by member from its (member, seq) index and meets the members in
    id order (a merge) instead of hashing them: a batch's five sums for each of 200,000 members took a 114 MB hash
    table and 0.45 s before the first member was written; streamed, they need neither (1.07 s -> 0.86 s for the
    whole update). A small batch plans nested probes either way."""
    if not _is_postgres():
        yield
        return
    before = _rows("SELECT current_setting('enable_hashagg'), current_setting('enable_hashjoin')")[0]
    _exec("SET LOCAL enable_hashagg = off")
    _exec("SET LOCAL enable_hashjoin = off")
    yield
    _exec("SELECT set_config('enable_hashagg', %s, true), set_config('enable_hashjoin', %s, true)", list(before))


def _summarise(members_touched: int | None = None) -> BulkResult:
    """The call's figures; members_touched where the caller counted them already (_Written)."""
    result = BulkResult()
    # One pass counts everything; the rows behind a count are read only where there are some (a big batch's
    # every other pass over the stage costs as much as this one).
    refused = by_rule = 0
    for state, op, count, credited, debited, short, ruled in _rows(
        f"""SELECT state, op, COUNT(*), SUM(CASE WHEN points > 0 THEN points ELSE 0 END),
                   SUM(CASE WHEN points < 0 THEN -points ELSE 0 END),
                   SUM(CASE WHEN shortfall > 0 THEN 1 ELSE 0 END), COUNT(earn_rule_id)
            FROM {_STAGE} GROUP BY state, op"""
    ):
        if state in (_NEW, _SHORT_ONLY):
            result.shortfalls += int(short)
        if state == _NEW:
            result.posted += count
            if op == _POST:
                result.points_credited += int(credited or 0)
                result.points_debited += int(debited or 0)
                by_rule += ruled
        elif state == _ALREADY:
            result.already_applied += count
        elif state == _NOTHING:
            result.nothing_to_do += count
        elif state == _REFUSED:
            refused += count
    if refused:
        result.refused = _rows(f"SELECT seq, refusal FROM {_STAGE} WHERE state = {_REFUSED} ORDER BY seq")
    if members_touched is None:
        members_touched = _rows(f"SELECT COUNT(DISTINCT member_id) FROM {_STAGE} WHERE state = {_NEW}")[0][0]
    result.members_touched = members_touched
    if by_rule:
        result.posted_by_rule = dict(
            _rows(
                f"""SELECT earn_rule_id, COUNT(*) FROM {_STAGE}
                    WHERE state = {_NEW} AND op = '{_POST}' AND earn_rule_id IS NOT NULL GROUP BY earn_rule_id"""
            )
        )
    return result


# ---------------------------------------------------------------------------------------------------------------
# Status moves and reversals in bulk (release job, undo of an import or a run, bulk approve/reject)


def pending_release_matured(*, now: datetime | None = None, actor=None) -> BulkResult:
    """Make every pending entry whose hold has ended active: the scheduled job of the return window."""
    from ..actors import RELEASE_JOB

    with transaction.atomic(), _staging():
        _stage_moves(
            f"""SELECT e.id AS seq, e.id AS entry_id, '{ACTIVATE}' AS op, %s AS reason FROM loyalty_ledgerentry e
                WHERE e.status = 'pending' AND e.hold_until <= %s""",
            ["Hold ended", now or timezone.now()],
        )
        return _apply(
            actor=actor or RELEASE_JOB,
            source="schedule",
            source_ref=None,
            policy=NegativeBalancePolicy.ALLOW,
            action="approve",
        )


def entries_approve_bulk(
    *, entry_ids, actor, reason: str = "Pending points approved", dry_run: bool = False
) -> BulkResult:
    """Approve many pending entries (staff: the permission to approve, within the agent's limits)."""
    moves = [Move(entry_id, ACTIVATE, reason) for entry_id in sorted(set(entry_ids))]
    return entries_post_bulk(
        postings=moves, actor=actor, source="admin", action="approve", policy="allow", dry_run=dry_run
    )


def entries_reject_bulk(*, entry_ids, actor, reason: str, dry_run: bool = False) -> BulkResult:
    """Reject many pending entries, with their pending take-backs."""
    moves = [Move(entry_id, REJECT, reason) for entry_id in sorted(set(entry_ids))]
    return entries_post_bulk(
        postings=moves, actor=actor, source="admin", action="approve", policy="allow", dry_run=dry_run
    )


def entries_reverse_bulk(
    *,
    entry_ids,
    reason: str,
    actor,
    source: str,
    action: str = "reverse",
    source_ref: int | None = None,
    policy: str | None = None,
    free_keys: bool = False,
    dry_run: bool = False,
) -> BulkResult:
    """Reverse many entries with the rules of a staff reversal: pending ones are rejected, active ones get a reversal
    linked one-to-one; refusals (rules.reversal_refusal, points spent under "forbid", an agent's limits) are reported
    by entry. free_keys: the reversed entries' facts may be credited again (an undo; loyalty.keys). action: the staff
    action the caller stands for ("reverse"; an undo names its own)."""
    policy = policy_or_default(policy)
    with transaction.atomic():
        _exec("DROP TABLE IF EXISTS ledger_stage_entries")
        _exec("CREATE TEMP TABLE ledger_stage_entries (entry_id bigint PRIMARY KEY)")
        fill_table("ledger_stage_entries", ("entry_id",), ((i,) for i in sorted(set(entry_ids))))
        with _staging():
            _stage_reversals(reason)
            result = _apply(
                actor=actor,
                source=source,
                source_ref=source_ref,
                policy=policy,
                action=action,
                dry_run=dry_run,
                ids_in_order=True,  # one INSERT staged every reversal, in entry order
            )
            if free_keys and not dry_run:
                _free_keys()
        _exec("DROP TABLE IF EXISTS ledger_stage_entries")  # on failure the rollback takes it, as it does the stage
        return result


def _stage_reversals(reason: str) -> None:
    chosen = "e.id IN (SELECT entry_id FROM ledger_stage_entries)"
    # What an earning no longer owes: its take-backs and the shortfalls recorded against it (rules.earning_owed).
    # Points of it that expired are gone already (ledger._not_recovered).
    taken_back = (
        """(COALESCE((SELECT -SUM(t.points) FROM loyalty_ledgerentry t
                               WHERE t.takes_back_id = e.id AND t.status <> 'rejected'), 0)
                     + COALESCE((SELECT SUM(s.points) FROM loyalty_shortfall s WHERE s.entry_id = e.id), 0)
                     + """
        + batch_expired_sql("e.id")
        + ")"
    )
    remaining = f"(e.points - CASE WHEN e.points > 0 THEN {taken_back} ELSE 0 END)"  # rules.reversal_remaining
    # Pending entries are rejected, with their pending take-backs (a pending take-back itself is a reversal: refused).
    _stage_moves(
        f"""SELECT e.id AS seq, e.id AS entry_id, '{REJECT}' AS op, %s AS reason FROM loyalty_ledgerentry e
            WHERE {chosen} AND e.status = 'pending' AND e.kind <> '{EntryKind.REVERSAL}'""",
        [reason[:MAX_REASON]],
    )
    refusal = rules.reversal_refusal_sql(
        entry="e",
        reversed_by="(SELECT r.id FROM loyalty_ledgerentry r WHERE r.reverses_id = e.id)",
        reversed_without_entry="EXISTS (SELECT 1 FROM loyalty_shortfall f WHERE f.reversal_of_id = e.id)",
        remaining=remaining,
    )
    # Active entries get a reversal of what is left of them; seq keeps entry order after the status moves.
    _exec(
        f"""INSERT INTO {_STAGE} (seq, op, member_id, points, apply_type, kind, status, counts, reason, reverses_id,
                state, refusal)
            SELECT e.id + (SELECT COALESCE(MAX(id), 0) FROM loyalty_ledgerentry), '{_POST}', e.member_id,
                   -{remaining}, '{RELATIVE}', '{EntryKind.REVERSAL}', 'active', e.counts_toward_lifetime, %s, e.id,
                   CASE WHEN refusal IS NULL THEN {_NEW} ELSE {_REFUSED} END, refusal
            FROM (SELECT e.*, {refusal} AS refusal FROM loyalty_ledgerentry e
                  WHERE {chosen} AND (e.status <> 'pending' OR e.kind = '{EntryKind.REVERSAL}')) e
            ORDER BY e.id""",  # the reversals draw their entry ids in posting order (_entry_id_default)
        [reason[:MAX_REASON]],
    )


def _free_keys() -> None:
    """The undone entries' facts may be credited again: each key moves to its next generation (loyalty.keys)."""
    _exec("DROP TABLE IF EXISTS ledger_freed")
    _exec(
        f"""CREATE TEMP TABLE ledger_freed AS
            SELECT e.idempotency_key AS k FROM loyalty_ledgerentry e JOIN {_STAGE} s ON s.entry_id = e.id
            WHERE s.state = {_NEW} AND s.op = '{REJECT}' AND e.idempotency_key IS NOT NULL
            UNION
            SELECT e.idempotency_key FROM loyalty_ledgerentry e JOIN {_STAGE} s ON s.reverses_id = e.id
            WHERE s.state IN ({_NEW}, {_SHORT_ONLY}) AND e.idempotency_key IS NOT NULL"""
    )
    # A first generation for keys never freed before; then the next one for keys that were a generation already.
    _exec(
        """INSERT INTO loyalty_freedkey (key, generation, live)
           SELECT k, 1, k || '#1' FROM ledger_freed
           WHERE NOT EXISTS (SELECT 1 FROM loyalty_freedkey f WHERE f.key = k OR f.live = k)"""
    )
    _exec(
        """UPDATE loyalty_freedkey SET generation = generation + 1,
               live = key || '#' || CAST(generation + 1 AS varchar(12))
           WHERE live IN (SELECT k FROM ledger_freed)"""
    )
    _exec("DROP TABLE ledger_freed")


# ---------------------------------------------------------------------------------------------------------------
# Tier thresholds changed


def tiers_recompute_all(*, reason: str = "Tier thresholds changed", dry_run: bool = False) -> tuple[int, int]:
    """Put every member in the tier their lifetime points reach now, recording each move with `reason`.

    Run after tiers are added, changed or retired (the tier admin queues it). Returns (moved up, moved down); with
    dry_run, counts them and writes nothing.
    """
    table = tier_table()
    target = tier_for_sql("lifetime_points", table)
    stale = f"COALESCE(tier_id, -1) <> COALESCE({target}, -1)"
    ranks = {i: t for t, i in table}
    with transaction.atomic():
        lock = " FOR UPDATE" if _is_postgres() and not dry_run else ""
        moved = _rows(f"SELECT id, tier_id, {target} FROM loyalty_member WHERE {stale} ORDER BY id{lock}")
        up = sum(1 for _id, old, new in moved if ranks.get(new, -1) > ranks.get(old, -1))
        if dry_run or not moved:
            return up, len(moved) - up
        _exec(
            f"""INSERT INTO tiers_tierchange
                    (member_id, from_tier_id, to_tier_id, lifetime_points, entry_id, reason, created_at)
                SELECT id, tier_id, {target}, lifetime_points, NULL, %s, %s FROM loyalty_member
                WHERE {stale} ORDER BY id""",
            [reason[:255], timezone.now()],
        )
        _exec(f"UPDATE loyalty_member SET tier_id = {target} WHERE {stale}")
        return up, len(moved) - up
