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
"""

import re
import time

from django.db import connection, transaction

from .bench_data import series

FLOOR_TABLE = "bench_ledger_floor"
LEDGER = "loyalty_ledgerentry"
# The indexes the ledger's specification names (on SQLite the first three are part of the table's own statement).
REQUIRED_INDEXES = {
    "loyalty_ledgerentry_pkey",
    "entry_idempotency_key_unique",
    "entry_reversed_once",
    "entry_member_created",
}


def ledger_write_floor_s(member_ids: list[int], count: int, *, required_only: bool = False) -> float:
    """Seconds to write `count` entries spread over `member_ids` into a copy of the ledger, committed."""
    if connection.in_atomic_block:
        # Inside a caller's transaction the commit (and its deferred checks, part of the floor) would not happen.
        raise RuntimeError("The ledger floor is measured in a transaction of its own.")
    try:
        with connection.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
            if connection.vendor == "postgresql":
                _copy_ledger_postgres(cur, required_only)
            else:
                _copy_ledger_sqlite(cur, member_ids, required_only)
        start = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(_fill_sql(count), [member_ids] if connection.vendor == "postgresql" else [])
        return time.perf_counter() - start
    finally:
        with connection.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
            cur.execute("DROP TABLE IF EXISTS bench_floor_members")


def _copy_ledger_postgres(cur, required_only: bool) -> None:
    cur.execute(
        f"CREATE TABLE {FLOOR_TABLE} (LIKE {LEDGER} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)"
    )
    cur.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s", [LEDGER]
    )
    for name, definition in cur.fetchall():
        if required_only and name not in REQUIRED_INDEXES:
            continue
        definition = re.sub(rf"INDEX {name} ON \S*{LEDGER} ", f"INDEX floor_{name[:50]} ON {FLOOR_TABLE} ", definition)
        cur.execute(definition)
    cur.execute(
        f"SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = '{LEDGER}'::regclass "
        "AND contype = 'f'"
    )
    for name, definition in cur.fetchall():
        # The links between entries (reverses, takes back) point at the copy itself, not at the real ledger.
        definition = definition.replace(f"REFERENCES {LEDGER}(", f"REFERENCES {FLOOR_TABLE}(")
        cur.execute(f"ALTER TABLE {FLOOR_TABLE} ADD CONSTRAINT floor_{name[:50]} {definition}")


def _copy_ledger_sqlite(cur, member_ids: list[int], required_only: bool) -> None:
    """SQLite keeps each table's and index's CREATE statement: the same statements, on the copy's name."""
    cur.execute("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = %s AND sql IS NOT NULL", [LEDGER])
    statements = cur.fetchall()
    table = next(sql for kind, _name, sql in statements if kind == "table")
    cur.execute(table.replace(f'"{LEDGER}"', f'"{FLOOR_TABLE}"'))  # its name, and the links between entries
    for kind, name, sql in statements:
        if kind == "index" and (name in REQUIRED_INDEXES or not required_only):
            sql = re.sub(rf'ON "?{LEDGER}"? ', f"ON {FLOOR_TABLE} ", sql, count=1)
            cur.execute(sql.replace(name, f"floor_{name}", 1))
    # SQLite has no arrays: the members are numbered in a table of their own.
    cur.execute("DROP TABLE IF EXISTS bench_floor_members")
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
