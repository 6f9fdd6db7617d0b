"""The ledger's bulk path: many postings at once with set-based SQL, giving the same ledger as posting one by one.

Postings go into a temporary staging table (COPY on PostgreSQL). Then, in one transaction:
1. rows whose idempotency key is already on the ledger are marked "already applied";
2. the members concerned are locked in primary-key order;
3. members whose rows need sequential care ("set to", a debit that would cross zero, a key repeated in the batch) are
   resolved in posting order with the single path's own rules; every other row is accepted as it stands;
4. entry ids are drawn in posting order, tier moves are found with window functions, and the entries, the tier changes,
   the shortfalls, the status moves and the members' cached figures are written with one statement each.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from tiers.models import Tier

from ..actors import SystemActor, actor_fields
from ..models import EntryKind, EntryStatus, NegativeBalancePolicy
from .ledger import (
    RELATIVE,
    SET_TO,
    counts_toward_lifetime,
    policy_or_default,
    resolve_debit,
    resolve_set_to,
)

STAGE = "ledger_stage"

# Row states in the staging table.
NEW, ALREADY, REFUSED, NOTHING, SHORT_ONLY = 0, 1, 2, 3, 4

# Operations: post a new entry, or move a pending entry.
POST, ACTIVATE, REJECT = "post", "activate", "reject"

STAGE_COLUMNS = (
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
    "reverses_id",
    "takes_back_id",
    "entry_id",
)
# New postings leave entry_id to the stage's default (see _entry_id_default).
POST_COLUMNS = STAGE_COLUMNS[:-1]


@dataclass
class Posting:
    """One posting for the bulk path. For apply_type "set", `points` is the target available balance."""

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

    def stage_row(self, seq: int) -> tuple:
        counts = self.counts_toward_lifetime
        if counts is None:
            counts = counts_toward_lifetime(self.kind)
        return (
            seq,
            POST,
            self.member_id,
            self.points,
            self.apply_type,
            self.kind,
            self.status,
            counts,
            self.reason[:500],
            self.idempotency_key,
            self.hold_until,
            self.earn_rule_id,
            None,
            None,
        )


@dataclass
class BulkResult:
    """What a bulk post did, by row (rows are numbered by their position, from 0)."""

    posted: int = 0
    already_applied: int = 0
    nothing_to_do: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    shortfalls: int = 0
    points_credited: int = 0
    points_debited: int = 0
    members_touched: int = 0
    tier_changes: int = 0


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _entry_id_default() -> str:
    """On PostgreSQL, a new row of the stage draws its entry id from the ledger's own sequence as it is loaded, so ids
    follow posting order without a second pass (rows that end up not posted leave gaps, as rollbacks do)."""
    if not _is_postgres():
        return ""
    sequence = _rows("SELECT pg_get_serial_sequence('loyalty_ledgerentry', 'id')")[0][0]
    return f"DEFAULT nextval('{sequence}')"


def stage_create() -> None:
    """Create (or empty) the staging table for this connection's transaction."""
    ts = "timestamptz" if _is_postgres() else "datetime"
    entry_id_default = _entry_id_default()
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {STAGE}")
        cur.execute(
            f"""CREATE TEMP TABLE {STAGE} (
                seq bigint PRIMARY KEY, op varchar(10) NOT NULL, member_id bigint NOT NULL, points bigint NOT NULL,
                apply_type varchar(10) NOT NULL, kind varchar(12) NOT NULL, status varchar(10) NOT NULL,
                counts boolean NOT NULL, reason text NOT NULL, idem_key text, hold_until {ts},
                earn_rule_id bigint, reverses_id bigint, takes_back_id bigint, entry_id bigint {entry_id_default},
                state smallint NOT NULL DEFAULT 0, shortfall bigint NOT NULL DEFAULT 0, refusal text)"""
        )


def stage_drop() -> None:
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {STAGE}")


@contextmanager
def staging():
    """The staging table for the block, inside the caller's transaction: created on entry, dropped when the block
    succeeds. When the block fails the transaction rolls back and takes the table with it; a DROP in a transaction a
    database error has aborted would itself fail and hide that error (and the retry that depends on its kind)."""
    stage_create()
    yield
    stage_drop()


def fill_table(table: str, columns: tuple[str, ...], rows) -> None:
    """Load rows into a table: COPY on PostgreSQL, executemany elsewhere."""
    with connection.cursor() as cur:
        if _is_postgres():
            with cur.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) >= 5000:
                cur.executemany(sql, batch)
                batch.clear()
        if batch:
            cur.executemany(sql, batch)


def _exec(sql: str, params=None) -> int:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return cur.rowcount


def _rows(sql: str, params=None) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return cur.fetchall()


def entries_post_bulk(
    *,
    postings,
    actor,
    source: str,
    source_ref: int | None = None,
    policy: str | None = None,
) -> BulkResult:
    """Post many entries at once: the same rules, keys and tiers as posting them one by one, in order."""
    policy = policy_or_default(policy)
    with transaction.atomic(), staging():
        fill_table(STAGE, POST_COLUMNS, (p.stage_row(i) for i, p in enumerate(postings)))
        return apply_stage(actor=actor, source=source, source_ref=source_ref, policy=policy)


def apply_stage(
    *, actor, source: str, source_ref: int | None, policy: str, keys_to_look_up: str = "1 = 1"
) -> BulkResult:
    """Apply the rows of the staging table (which the caller filled) inside the caller's transaction.

    keys_to_look_up: a condition on the stage's columns choosing the rows whose key may already be on the ledger
    (all rows by default). A caller that can prove the other keys new (an import's own row keys before any of its
    chunks committed) saves a million index lookups; were the proof wrong, the ledger's unique key would refuse the
    repeat and the whole transaction would fail, so nothing can apply twice either way.
    """
    now = timezone.now()
    if _is_postgres():
        # These statements' cost estimates pass the JIT threshold on a big stage, and compiling each one takes about
        # half a second (measured: longer than running most of them); the transaction runs them without.
        _exec("SET LOCAL jit = off")
    _exec(f"CREATE INDEX IF NOT EXISTS {STAGE}_key ON {STAGE} (idem_key)")
    _exec(f"CREATE INDEX IF NOT EXISTS {STAGE}_member ON {STAGE} (member_id, seq)")
    if _is_postgres():
        # A temporary table has no statistics until analysed: the planner would take a big stage for a few hundred
        # rows and look members up one index probe at a time where one pass over them is cheaper.
        _exec(f"ANALYZE {STAGE}")
    _mark_unknown_members()
    _mark_already_applied(keys_to_look_up)
    _lock_members()
    _mark_moves_no_longer_pending()
    _resolve_sequentially(_members_needing_order(policy), policy)
    _assign_entry_ids()
    tier_changes = _write_tier_changes(now)
    _insert_entries(actor=actor, source=source, source_ref=source_ref, now=now)
    _move_statuses(actor=actor, now=now)
    _insert_shortfalls(now)
    _update_balances_and_tiers()
    result = _summarise()
    result.tier_changes = tier_changes
    return result


def _mark_unknown_members() -> None:
    _exec(
        f"""UPDATE {STAGE} SET state = {REFUSED}, refusal = 'Member #' || member_id || ' does not exist.'
            WHERE NOT EXISTS (SELECT 1 FROM loyalty_member m WHERE m.id = {STAGE}.member_id)"""
    )


def _mark_already_applied(keys_to_look_up: str = "1 = 1") -> None:
    _exec(
        f"""UPDATE {STAGE} SET state = {ALREADY}
            WHERE state = {NEW} AND idem_key IS NOT NULL AND ({keys_to_look_up}) AND (
                EXISTS (SELECT 1 FROM loyalty_ledgerentry e WHERE e.idempotency_key = {STAGE}.idem_key)
                OR EXISTS (SELECT 1 FROM loyalty_shortfall s WHERE s.idempotency_key = {STAGE}.idem_key))"""
    )


def _lock_members() -> None:
    if _is_postgres():
        _rows(
            f"""SELECT id FROM loyalty_member WHERE id IN (SELECT member_id FROM {STAGE} WHERE state = {NEW})
                ORDER BY id FOR UPDATE"""
        )


def _mark_moves_no_longer_pending() -> None:
    """Status moves are checked again under the members' locks: the entry may have moved since it was chosen."""
    _exec(
        f"""UPDATE {STAGE} SET state = {REFUSED}, refusal = 'Entry #' || entry_id || ' is no longer pending.'
            WHERE state = {NEW} AND op <> '{POST}' AND NOT EXISTS (
                SELECT 1 FROM loyalty_ledgerentry e WHERE e.id = {STAGE}.entry_id AND e.status = 'pending')"""
    )


def _members_needing_order(policy: str) -> list[int]:
    """Members whose rows cannot all be accepted as they stand: "set to", a debit crossing zero, a repeated key.

    The running-balance window only looks at members with a debit in the batch: credits alone never cross zero.
    """
    crossing = ""
    if policy != NegativeBalancePolicy.ALLOW:
        crossing = f"""
            UNION
            SELECT member_id FROM (
                SELECT s.member_id, s.op, s.status, s.points,
                       m.available_points + SUM(CASE WHEN s.status = 'active' OR s.op = '{ACTIVATE}'
                                                     THEN s.points ELSE 0 END)
                           OVER (PARTITION BY s.member_id ORDER BY s.seq ROWS UNBOUNDED PRECEDING) AS balance_after
                FROM {STAGE} s JOIN loyalty_member m ON m.id = s.member_id
                WHERE s.state = {NEW} AND s.member_id IN (
                    SELECT member_id FROM {STAGE}
                    WHERE state = {NEW} AND op = '{POST}' AND status = 'active' AND points < 0)) x
            WHERE op = '{POST}' AND status = 'active' AND points < 0 AND balance_after < 0"""
    rows = _rows(
        f"""SELECT member_id FROM {STAGE} WHERE state = {NEW} AND apply_type = '{SET_TO}'
            {crossing}
            UNION
            SELECT member_id FROM {STAGE} WHERE state = {NEW} AND idem_key IN (
                SELECT idem_key FROM {STAGE} WHERE state = {NEW} AND idem_key IS NOT NULL
                GROUP BY idem_key HAVING COUNT(*) > 1)"""
    )
    return sorted(r[0] for r in rows)


def _resolve_sequentially(member_ids: list[int], policy: str) -> None:
    """Resolve the rows of these members in posting order, exactly as the single path would."""
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
        f"""SELECT seq, op, member_id, points, apply_type, status, kind, idem_key FROM {STAGE}
            WHERE state = {NEW} AND idem_key IN (
                SELECT idem_key FROM {STAGE} s JOIN ledger_stage_members x ON x.member_id = s.member_id)
            UNION
            SELECT seq, op, member_id, points, apply_type, status, kind, idem_key FROM {STAGE}
            WHERE state = {NEW} AND member_id IN (SELECT member_id FROM ledger_stage_members)
            ORDER BY seq"""
    )
    seen_keys: set[str] = set()
    decisions = []
    for seq, op, member_id, points, apply_type, status, kind, key in rows:
        if member_id not in balances:
            balances[member_id] = list(
                _rows(
                    "SELECT available_points, email FROM loyalty_member WHERE id = %s",
                    [member_id],
                )[0]
            )
        decision = _decide(
            balances[member_id],
            op,
            points,
            apply_type,
            status,
            kind,
            key,
            seen_keys,
            policy,
        )
        decisions.append((seq, *decision))
    _exec("DROP TABLE IF EXISTS ledger_stage_decisions")
    _exec(
        "CREATE TEMP TABLE ledger_stage_decisions "
        "(seq bigint PRIMARY KEY, state smallint, points bigint, shortfall bigint, refusal text)"
    )
    fill_table(
        "ledger_stage_decisions",
        ("seq", "state", "points", "shortfall", "refusal"),
        decisions,
    )
    _exec(
        f"""UPDATE {STAGE} SET state = d.state, points = d.points, shortfall = d.shortfall, refusal = d.refusal,
                apply_type = '{RELATIVE}'
            FROM ledger_stage_decisions d WHERE {STAGE}.seq = d.seq"""
    )
    _exec("DROP TABLE ledger_stage_decisions")
    _exec("DROP TABLE ledger_stage_members")


def _decide(balance, op, points, apply_type, status, kind, key, seen_keys, policy):
    """One row's fate, given the member's running balance: (state, points, shortfall, refusal)."""
    available, email = balance
    if key and key in seen_keys:
        return ALREADY, points, 0, None
    if op != POST:
        if op == ACTIVATE:
            balance[0] += points
        if key:
            seen_keys.add(key)
        return NEW, points, 0, None
    change = points
    if apply_type == SET_TO:
        change = resolve_set_to(available=available, target=points)
        if change == 0:
            return NOTHING, points, 0, None
    posted, short = change, 0
    if status == EntryStatus.ACTIVE:
        posted, short = resolve_debit(available=available, points=change, policy=policy)
        if policy == NegativeBalancePolicy.FORBID and short:
            if kind == EntryKind.REVERSAL:
                refusal = f"Cannot reverse: {-change:,} points were credited but only {available:,} are available."
            else:
                refusal = f"Cannot take {-change:,} points from {email}: only {available:,} are available."
            return REFUSED, change, 0, refusal
        balance[0] += posted
    if key:
        seen_keys.add(key)
    if posted == 0:
        return SHORT_ONLY, change, short, None
    return NEW, posted, short, None


def _assign_entry_ids() -> None:
    """Give every new entry its id in posting order, so the ledger reads as if posted one by one."""
    if _is_postgres():
        # Rows loaded with an explicit NULL entry id did not get the default: draw theirs now, in posting order.
        sequence = _rows("SELECT pg_get_serial_sequence('loyalty_ledgerentry', 'id')")[0][0]
        _exec(
            f"""UPDATE {STAGE} SET entry_id = x.id FROM (
                    SELECT seq, nextval('{sequence}') AS id FROM (
                        SELECT seq FROM {STAGE} WHERE op = '{POST}' AND entry_id IS NULL ORDER BY seq) o) x
                WHERE {STAGE}.seq = x.seq"""
        )
        return
    # SQLite: the transaction holds the database's write lock, so the next ids are ours to take.
    top = _rows(
        """SELECT MAX(v) FROM (SELECT MAX(id) AS v FROM loyalty_ledgerentry
           UNION ALL SELECT seq FROM sqlite_sequence WHERE name = 'loyalty_ledgerentry')"""
    )[0][0]
    _exec(
        f"""UPDATE {STAGE} SET entry_id = x.id FROM (
                SELECT seq, ROW_NUMBER() OVER (ORDER BY seq) + %s AS id
                FROM {STAGE} WHERE state = {NEW} AND op = '{POST}') x
            WHERE {STAGE}.seq = x.seq""",
        [top or 0],
    )


def _tier_case(column: str) -> str:
    """A CASE expression giving the tier id for a lifetime figure (tiers are few; thresholds are integers)."""
    tiers = list(Tier.objects.order_by("-threshold").values_list("threshold", "id"))
    if not tiers:
        return "CAST(NULL AS bigint)"
    whens = " ".join(f"WHEN {column} >= {int(t)} THEN {int(i)}" for t, i in tiers)
    return f"CASE {whens} ELSE NULL END"


def _lifetime_rows_filter(alias: str = "s") -> str:
    return (
        f"{alias}.state = {NEW} AND {alias}.counts AND "
        f"(({alias}.op = '{POST}' AND {alias}.status = 'active') OR {alias}.op = '{ACTIVATE}')"
    )


def _members_whose_tier_may_move() -> str:
    """Members whose tier can move within the batch: a debit makes the path non-monotonic; otherwise the tier can
    only move if the tier at the end (or already the tier at the start) differs from the one on record."""
    return f"""
        SELECT a.member_id FROM (
            SELECT s.member_id, SUM(s.points) AS total, MIN(s.points) AS lowest
            FROM {STAGE} s WHERE {_lifetime_rows_filter()} GROUP BY s.member_id) a
        JOIN loyalty_member m ON m.id = a.member_id
        WHERE a.lowest < 0
           OR COALESCE(m.tier_id, -1) <> COALESCE({_tier_case("m.lifetime_points + a.total")}, -1)
           OR COALESCE(m.tier_id, -1) <> COALESCE({_tier_case("m.lifetime_points")}, -1)"""


def _write_tier_changes(now) -> int:
    """One TierChange for every entry that moves its member to another tier, as the single path records them."""
    sql = f"""
        INSERT INTO tiers_tierchange
            (member_id, from_tier_id, to_tier_id, lifetime_points, entry_id, reason, created_at)
        SELECT member_id, prev_tier, tier_after, lifetime_after, entry_id, reason, %s FROM (
            SELECT member_id, seq, entry_id, reason, lifetime_after, tier_after,
                   CASE WHEN rn = 1 THEN tier0
                        ELSE LAG(tier_after) OVER (PARTITION BY member_id ORDER BY seq) END AS prev_tier
            FROM (
                SELECT member_id, seq, entry_id, reason, lifetime_after, tier0, rn,
                       {_tier_case("lifetime_after")} AS tier_after
                FROM (
                    SELECT s.member_id, s.seq, s.entry_id, SUBSTR(s.reason, 1, 255) AS reason, m.tier_id AS tier0,
                           m.lifetime_points + SUM(s.points) OVER w AS lifetime_after,
                           ROW_NUMBER() OVER w AS rn
                    FROM {STAGE} s JOIN loyalty_member m ON m.id = s.member_id
                    WHERE {_lifetime_rows_filter()} AND s.member_id IN ({_members_whose_tier_may_move()})
                    WINDOW w AS (PARTITION BY s.member_id ORDER BY s.seq ROWS UNBOUNDED PRECEDING)
                ) a
            ) b
        ) c
        WHERE COALESCE(prev_tier, -1) <> COALESCE(tier_after, -1)
        ORDER BY seq"""
    return _exec(sql, [now])


def _insert_entries(*, actor, source: str, source_ref: int | None, now) -> None:
    who = actor_fields(actor)
    _exec(
        f"""INSERT INTO loyalty_ledgerentry (id, member_id, points, kind, status, counts_toward_lifetime, reason,
                actor_user_id, actor_system, source, source_ref, earn_rule_id, reverses_id, takes_back_id,
                idempotency_key, hold_until, created_at)
            SELECT entry_id, member_id, points, kind, status, counts, reason, %s, %s, %s, %s, earn_rule_id,
                   reverses_id, takes_back_id, idem_key, CASE WHEN status = 'pending' THEN hold_until END, %s
            FROM {STAGE} WHERE state = {NEW} AND op = '{POST}' ORDER BY seq""",
        [who["actor_user_id"], who["actor_system"], source, source_ref, now],
    )


def _move_statuses(*, actor, now) -> None:
    """The one permitted change of entries: pending -> active (activate) or rejected (reject)."""
    by = None if isinstance(actor, SystemActor) else actor.pk
    _exec(
        f"""UPDATE loyalty_ledgerentry SET status = x.new_status, status_changed_at = %s, status_changed_by_id = %s
            FROM (SELECT entry_id, CASE WHEN op = '{ACTIVATE}' THEN 'active' ELSE 'rejected' END AS new_status
                  FROM {STAGE} WHERE state = {NEW} AND op <> '{POST}') x
            WHERE loyalty_ledgerentry.id = x.entry_id AND loyalty_ledgerentry.status = 'pending'""",
        [now, by],
    )


def _insert_shortfalls(now) -> None:
    _exec(
        f"""INSERT INTO loyalty_shortfall (member_id, points, reason, entry_id, posted_entry_id, reversal_of_id,
                idempotency_key, created_at)
            SELECT member_id, shortfall, reason, reverses_id,
                   CASE WHEN state = {NEW} THEN entry_id END,
                   CASE WHEN state = {SHORT_ONLY} THEN reverses_id END,
                   CASE WHEN state = {SHORT_ONLY} THEN idem_key END, %s
            FROM {STAGE} WHERE shortfall > 0 AND state IN ({NEW}, {SHORT_ONLY}) ORDER BY seq""",
        [now],
    )


def _update_balances_and_tiers() -> None:
    """Move the members' cached figures, and their tier where lifetime moved, with one write per member."""
    new_lifetime = "loyalty_member.lifetime_points + d.lifetime"
    _exec(
        f"""UPDATE loyalty_member SET
                available_points = loyalty_member.available_points + d.available,
                pending_points = loyalty_member.pending_points + d.pending,
                lifetime_points = {new_lifetime},
                tier_id = CASE WHEN d.moves_lifetime = 1 THEN {_tier_case(new_lifetime)}
                               ELSE loyalty_member.tier_id END
            FROM (
                SELECT member_id,
                    SUM(CASE WHEN (op = '{POST}' AND status = 'active') OR op = '{ACTIVATE}'
                             THEN points ELSE 0 END) AS available,
                    SUM(CASE WHEN op = '{POST}' AND status = 'pending' THEN points
                             WHEN op <> '{POST}' THEN -points ELSE 0 END) AS pending,
                    SUM(CASE WHEN {_lifetime_rows_filter(STAGE)} THEN points ELSE 0 END) AS lifetime,
                    MAX(CASE WHEN {_lifetime_rows_filter(STAGE)} THEN 1 ELSE 0 END) AS moves_lifetime
                FROM {STAGE} WHERE state = {NEW} GROUP BY member_id) d
            WHERE loyalty_member.id = d.member_id"""
    )


def _summarise() -> BulkResult:
    result = BulkResult()
    for state, op, count, credited, debited in _rows(
        f"""SELECT state, op, COUNT(*), SUM(CASE WHEN points > 0 THEN points ELSE 0 END),
                   SUM(CASE WHEN points < 0 THEN -points ELSE 0 END)
            FROM {STAGE} GROUP BY state, op"""
    ):
        if state == NEW:
            result.posted += count
            if op == POST:
                result.points_credited += int(credited or 0)
                result.points_debited += int(debited or 0)
        elif state == ALREADY:
            result.already_applied += count
        elif state == NOTHING:
            result.nothing_to_do += count
    result.refused = [
        (seq, refusal)
        for seq, refusal in _rows(f"SELECT seq, refusal FROM {STAGE} WHERE state = {REFUSED} ORDER BY seq")
    ]
    result.shortfalls = _rows(f"SELECT COUNT(*) FROM {STAGE} WHERE shortfall > 0 AND state IN ({NEW}, {SHORT_ONLY})")[
        0
    ][0]
    result.members_touched = _rows(f"SELECT COUNT(DISTINCT member_id) FROM {STAGE} WHERE state = {NEW}")[0][0]
    return result


# ---------------------------------------------------------------------------------------------------------------
# Status moves and reversals in bulk (release job, undo of an import or a run, bulk approve/reject)


def _run_staged(fill_sql: str, params, *, actor, source: str, source_ref: int | None, policy: str) -> BulkResult:
    with transaction.atomic(), staging():
        _exec(fill_sql, params)
        return apply_stage(actor=actor, source=source, source_ref=source_ref, policy=policy)


def _ids_table(entry_ids) -> None:
    _exec("DROP TABLE IF EXISTS ledger_stage_entries")
    _exec("CREATE TEMP TABLE ledger_stage_entries (entry_id bigint PRIMARY KEY)")
    fill_table("ledger_stage_entries", ("entry_id",), ((i,) for i in sorted(set(entry_ids))))


def _move_fill_sql(op: str, where: str) -> str:
    """Stage status moves of pending entries (and, on reject, their pending take-backs), in entry order."""
    return f"""INSERT INTO {STAGE} (seq, op, member_id, points, apply_type, kind, status, counts, reason, entry_id)
        SELECT e.id, '{op}', e.member_id, e.points, '{RELATIVE}', e.kind, e.status, e.counts_toward_lifetime,
               %s, e.id
        FROM loyalty_ledgerentry e WHERE e.status = 'pending' AND ({where})"""


def pending_release_matured(*, now: datetime | None = None, actor=None) -> BulkResult:
    """Make every pending entry whose hold has ended active: the scheduled job of the return window."""
    from ..actors import RELEASE_JOB

    return _run_staged(
        _move_fill_sql(ACTIVATE, "e.hold_until <= %s"),
        ["Hold ended", now or timezone.now()],
        actor=actor or RELEASE_JOB,
        source="schedule",
        source_ref=None,
        policy=NegativeBalancePolicy.ALLOW,
    )


def entries_approve_bulk(*, entry_ids, actor, reason: str = "Pending points approved") -> BulkResult:
    with transaction.atomic():
        _ids_table(entry_ids)
        return _run_staged(
            _move_fill_sql(ACTIVATE, "e.id IN (SELECT entry_id FROM ledger_stage_entries)"),
            [reason],
            actor=actor,
            source="admin",
            source_ref=None,
            policy=NegativeBalancePolicy.ALLOW,
        )


def entries_reject_bulk(*, entry_ids, actor, reason: str) -> BulkResult:
    with transaction.atomic():
        _ids_table(entry_ids)
        return _run_staged(
            _move_fill_sql(
                REJECT,
                "e.id IN (SELECT entry_id FROM ledger_stage_entries) "
                "OR e.takes_back_id IN (SELECT entry_id FROM ledger_stage_entries)",
            ),
            [reason],
            actor=actor,
            source="admin",
            source_ref=None,
            policy=NegativeBalancePolicy.ALLOW,
        )


def entries_reverse_bulk(
    *,
    entry_ids,
    reason: str,
    actor,
    source: str,
    source_ref: int | None = None,
    policy: str | None = None,
) -> BulkResult:
    """Reverse many entries with the rules of a staff reversal: pending ones are rejected, active ones get a reversal
    linked one-to-one; refusals (already reversed, a reversal, rejected, points spent under "forbid") are reported."""
    policy = policy_or_default(policy)
    with transaction.atomic():
        _ids_table(entry_ids)
        with staging():
            _stage_reversals(reason)
            result = apply_stage(actor=actor, source=source, source_ref=source_ref, policy=policy)
        _exec("DROP TABLE IF EXISTS ledger_stage_entries")  # on failure the rollback takes it, as it does the stage
        return result


def _stage_reversals(reason: str) -> None:
    chosen = "e.id IN (SELECT entry_id FROM ledger_stage_entries)"
    # What an earning no longer owes: its take-backs and the shortfalls recorded against it (ledger.earning_owed).
    taken_back = """(COALESCE((SELECT -SUM(t.points) FROM loyalty_ledgerentry t
                               WHERE t.takes_back_id = e.id AND t.status <> 'rejected'), 0)
                     + COALESCE((SELECT SUM(s.points) FROM loyalty_shortfall s WHERE s.entry_id = e.id), 0))"""
    # Pending entries are rejected, with their pending take-backs.
    _exec(
        _move_fill_sql(
            REJECT,
            f"{chosen} OR e.takes_back_id IN (SELECT entry_id FROM ledger_stage_entries "
            f"JOIN loyalty_ledgerentry p ON p.id = entry_id WHERE p.status = 'pending')",
        ),
        [reason],
    )
    # Active entries get a reversal of what is left of them; seq keeps entry order after the status moves.
    _exec(
        f"""INSERT INTO {STAGE} (seq, op, member_id, points, apply_type, kind, status, counts, reason, reverses_id,
                state, refusal)
            SELECT e.id + (SELECT COALESCE(MAX(id), 0) FROM loyalty_ledgerentry), '{POST}', e.member_id,
                   -(e.points - CASE WHEN e.points > 0 THEN {taken_back} ELSE 0 END),
                   '{RELATIVE}', '{EntryKind.REVERSAL}', 'active', e.counts_toward_lifetime, %s, e.id,
                   CASE WHEN e.kind = 'reversal' OR e.status = 'rejected'
                          OR EXISTS (SELECT 1 FROM loyalty_ledgerentry r WHERE r.reverses_id = e.id)
                          OR EXISTS (SELECT 1 FROM loyalty_shortfall f WHERE f.reversal_of_id = e.id)
                          OR e.points - CASE WHEN e.points > 0 THEN {taken_back} ELSE 0 END = 0
                        THEN {REFUSED} ELSE {NEW} END,
                   CASE WHEN e.kind = 'reversal' THEN 'Entry #' || e.id || ' is itself a reversal.'
                        WHEN e.status = 'rejected' THEN 'Entry #' || e.id || ' was rejected: nothing to reverse.'
                        WHEN EXISTS (SELECT 1 FROM loyalty_ledgerentry r WHERE r.reverses_id = e.id)
                          OR EXISTS (SELECT 1 FROM loyalty_shortfall f WHERE f.reversal_of_id = e.id)
                        THEN 'Entry #' || e.id || ' was already reversed.'
                        ELSE 'Entry #' || e.id || ' was already taken back in full.' END
            FROM loyalty_ledgerentry e WHERE {chosen} AND e.status <> 'pending'""",
        [reason[:500]],
    )


# ---------------------------------------------------------------------------------------------------------------
# Tier thresholds changed


def tiers_recompute_all(*, reason: str = "Tier thresholds changed") -> int:
    """Put every member in the tier their lifetime points reach now, recording each move; returns how many moved.

    Run after tiers are added, changed or removed (the tier admin does). Members whose lifetime never moved keep
    "no tier", as everywhere else.
    """
    now = timezone.now()
    target = _tier_case("lifetime_points")
    stale = f"""(tier_id IS NOT NULL OR lifetime_points <> 0)
                AND COALESCE(tier_id, -1) <> COALESCE({target}, -1)"""
    with transaction.atomic():
        lock = " FOR UPDATE" if _is_postgres() else ""
        moved = _rows(f"SELECT id FROM loyalty_member WHERE {stale} ORDER BY id{lock}")
        if not moved:
            return 0
        _exec(
            f"""INSERT INTO tiers_tierchange
                    (member_id, from_tier_id, to_tier_id, lifetime_points, entry_id, reason, created_at)
                SELECT id, tier_id, {target}, lifetime_points, NULL, %s, %s FROM loyalty_member
                WHERE {stale} ORDER BY id""",
            [reason[:255], now],
        )
        _exec(f"UPDATE loyalty_member SET tier_id = {target} WHERE {stale}")
        return len(moved)
