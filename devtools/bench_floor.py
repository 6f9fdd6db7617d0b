"""The ledger's write floor, for the benchmarks: what writing N entries costs on this database with none of our rules.

A scratch table shaped exactly like the ledger (its columns, checks, indexes and foreign keys, created from the live
table's own definitions) takes N ready-made entries in one INSERT ... SELECT, and the transaction commits, which runs
the deferred foreign-key checks. No balance, tier, key lookup or staging: any way of posting N entries to this ledger
costs at least this much on this machine, so a goal above the floor cannot be met without dropping a guard or an
index. The scratch table is dropped afterwards; no entry of the real ledger is written. Creating and dropping its
foreign keys briefly locks the tables it refers to (members, users, ways to earn), as any new foreign key does: a
benchmark database, not a live store.

With required_only, the copy keeps only what the ledger's own specification requires of it: the primary key, the
unique idempotency key, the unique reverses link, the (member, created) index, the checks and the foreign keys. The
other indexes serve the admin's lists and the jobs' lookups. Even that leaner table sets a floor for any design.

With with_batches, each floor entry (all are credits) also opens its ready-made batch in a copy of the batch table
(loyalty.models.PointsBatch: its columns, checks, indexes and foreign keys, the entry's pointing at the ledger's
copy), in the same transaction: since points expire by batch, every active credit the ledger takes writes both, so
this is the floor of a bulk post of credits (each batch's place on its member's line is a running sum of the floor's
credits). Its required guards keep the batch's primary key, its one-to-one link to the entry and the member's line
(unique member and place, the spending order); the (member, available since) index serves the expiry runs.
"""

import re
import time

from django.db import connection, transaction

from .bench_data import series

FLOOR_TABLE = "bench_ledger_floor"
BATCH_FLOOR_TABLE = "bench_batch_floor"
LEDGER = "loyalty_ledgerentry"
BATCHES = "loyalty_pointsbatch"
# The indexes the ledger's specification names (on SQLite the first three are part of the table's own statement).
REQUIRED_INDEXES = {
    "loyalty_ledgerentry_pkey",
    "entry_idempotency_key_unique",
    "entry_reversed_once",
    "entry_member_created",
    # The batch table's: its key, its entry (one batch per credit) and the order debits spend batches in.
    "loyalty_pointsbatch_pkey",
    "loyalty_pointsbatch_entry_id_key",
    "batch_member_through",
}


def ledger_write_floor_s(
    member_ids: list[int], count: int, *, required_only: bool = False, with_batches: bool = False
) -> float:
    """Seconds to write `count` entries spread over `member_ids` into a copy of the ledger, committed (with_batches:
    and the batch each opens, into a copy of the batch table)."""
    if connection.in_atomic_block:
        # Inside a caller's transaction the commit (and its deferred checks, part of the floor) would not happen.
        raise RuntimeError("The ledger floor is measured in a transaction of its own.")
    try:
        with connection.cursor() as cur:
            _drop_copies(cur)
            if connection.vendor == "postgresql":
                _copy_postgres(cur, LEDGER, FLOOR_TABLE, required_only)
                if with_batches:
                    _copy_postgres(cur, BATCHES, BATCH_FLOOR_TABLE, required_only)
            else:
                _copy_sqlite(cur, LEDGER, FLOOR_TABLE, required_only)
                if with_batches:
                    _copy_sqlite(cur, BATCHES, BATCH_FLOOR_TABLE, required_only)
                _number_members_sqlite(cur, member_ids)
        start = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(_fill_sql(count), [member_ids] if connection.vendor == "postgresql" else [])
            if with_batches:
                cur.execute(
                    f"""INSERT INTO {BATCH_FLOOR_TABLE} (member_id, entry_id, earned_at, points, through)
                        SELECT member_id, id, created_at, points,
                               SUM(points) OVER (PARTITION BY member_id ORDER BY id ROWS UNBOUNDED PRECEDING)
                        FROM {FLOOR_TABLE} ORDER BY id"""
                )
        return time.perf_counter() - start
    finally:
        with connection.cursor() as cur:
            _drop_copies(cur)


def _drop_copies(cur) -> None:
    cur.execute(f"DROP TABLE IF EXISTS {BATCH_FLOOR_TABLE}")
    cur.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
    cur.execute("DROP TABLE IF EXISTS bench_floor_members")


def _copy_postgres(cur, source: str, copy: str, required_only: bool) -> None:
    cur.execute(f"CREATE TABLE {copy} (LIKE {source} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)")
    cur.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s", [source]
    )
    for name, definition in cur.fetchall():
        if required_only and name not in REQUIRED_INDEXES:
            continue
        definition = re.sub(rf"INDEX {name} ON \S*{source} ", f"INDEX floor_{name[:50]} ON {copy} ", definition)
        cur.execute(definition)
    cur.execute(
        f"SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = '{source}'::regclass "
        "AND contype = 'f'"
    )
    for name, definition in cur.fetchall():
        # Links to entries (reverses, takes back, a batch's entry) point at the ledger's copy, not at the real ledger.
        definition = definition.replace(f"REFERENCES {LEDGER}(", f"REFERENCES {FLOOR_TABLE}(")
        cur.execute(f"ALTER TABLE {copy} ADD CONSTRAINT floor_{name[:50]} {definition}")


def _copy_sqlite(cur, source: str, copy: str, required_only: bool) -> None:
    """SQLite keeps each table's and index's CREATE statement: the same statements, on the copy's name."""
    cur.execute("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = %s AND sql IS NOT NULL", [source])
    statements = cur.fetchall()
    table = next(sql for kind, _name, sql in statements if kind == "table")
    # Its name, and the links to entries (the ledger's copy).
    cur.execute(table.replace(f'"{source}"', f'"{copy}"').replace(f'"{LEDGER}"', f'"{FLOOR_TABLE}"'))
    for kind, name, sql in statements:
        if kind == "index" and (name in REQUIRED_INDEXES or not required_only):
            sql = re.sub(rf'ON "?{source}"? ', f"ON {copy} ", sql, count=1)
            cur.execute(sql.replace(name, f"floor_{name}", 1))


def _number_members_sqlite(cur, member_ids: list[int]) -> None:
    # SQLite has no arrays: the members are numbered in a table of their own.
    cur.execute("CREATE TEMP TABLE bench_floor_members (n integer PRIMARY KEY, member_id bigint)")
    cur.executemany("INSERT INTO bench_floor_members VALUES (%s, %s)", list(enumerate(member_ids)))


def _fill_sql(count: int) -> str:
    """Entry n of 1..count goes to the member at position n modulo the number of members."""
    columns = (
        "member_id, points, kind, status, counts_toward_lifetime, reason, actor_system, source, idempotency_key, "
        "created_at"
    )
    values = "5 + g.n %% 40, 'adjustment', 'active', TRUE, 'floor', 'bench floor', 'system', 'floor:' || g.n"
    if connection.vendor == "postgresql":
        return f"""INSERT INTO {FLOOR_TABLE} ({columns})
            SELECT ids[1 + g.n %% cardinality(ids)], {values}, now()
            FROM {series(count)}, (SELECT %s::bigint[] AS ids) m"""
    return f"""INSERT INTO {FLOOR_TABLE} ({columns})
        SELECT m.member_id, {values}, CURRENT_TIMESTAMP
        FROM {series(count)} JOIN bench_floor_members m ON m.n = g.n %% (SELECT COUNT(*) FROM bench_floor_members)"""
