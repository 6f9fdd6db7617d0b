"""Small SQL helpers for the import's own tables (PostgreSQL and SQLite)."""

import csv
import io

from django.db import connection

from loyalty.services.tables import execute, rows  # noqa: F401  (the import's callers use sql.execute, sql.rows)

# Rows sent per COPY write (PostgreSQL) or per executemany (SQLite): big enough that the per-call cost vanishes,
# small enough that a block stays a few MB whatever the file's size.
BLOCK_ROWS = 20_000

# Column types by backend: staging tables hold typed values, parsed and validated in Python.
TYPES = {
    "postgresql": {"int": "bigint", "text": "text", "ts": "timestamptz", "bool": "boolean"},
    "sqlite": {"int": "integer", "text": "text", "ts": "datetime", "bool": "bool"},
}


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def tune_transaction() -> None:
    """For the rest of the transaction (PostgreSQL): no JIT compiling of the import's big statements (it costs about
    half a second a statement, more than most of them take to run), and room to sort a chunk's rows in memory
    (the default 4 MB sends every sort of a big chunk to disk)."""
    if is_postgres():
        execute("SET LOCAL jit = off")
        execute("SET LOCAL work_mem = '64MB'")


def check_constraints_now() -> None:
    """Run the transaction's deferred foreign-key checks now (PostgreSQL; in a transaction of the caller's own: an
    outer transaction keeps its constraints deferred).

    Ranges on several workers meet last on their job's row: a range holds that row's lock until it commits, and a
    commit first runs the deferred checks of every row the range wrote (seconds for half a million entries). Run
    before the job's row is locked, the checks of two ranges go side by side instead of one range's queueing behind
    the other's.
    """
    execute("SET CONSTRAINTS ALL IMMEDIATE")


def executemany(sql: str, param_rows: list) -> None:
    if param_rows:
        with connection.cursor() as cur:
            cur.executemany(sql, param_rows)


def one(sql: str, params=None):
    found = rows(sql, params)
    return found[0][0] if found else None


def create_table(name: str, columns: tuple[tuple[str, str], ...], *, temp: bool, key: str = "row_no") -> None:
    """(Re)create a table of (name, type) columns; persistent ones are UNLOGGED on PostgreSQL (they can be rebuilt
    from the stored file, so they need no write-ahead log)."""
    types = TYPES["postgresql" if is_postgres() else "sqlite"]
    body = ", ".join(f"{col} {types[kind]}{' PRIMARY KEY' if col == key else ''}" for col, kind in columns)
    prefix = "CREATE TEMP TABLE" if temp else "CREATE UNLOGGED TABLE" if is_postgres() else "CREATE TABLE"
    execute(f"DROP TABLE IF EXISTS {name}")
    execute(f"{prefix} {name} ({body})")


def table_exists(name: str) -> bool:
    return name in connection.introspection.table_names()


def drop_table(name: str) -> None:
    execute(f"DROP TABLE IF EXISTS {name}")


def adapt_datetime(value):
    """A datetime as the backend stores it (SQLite keeps naive UTC text; PostgreSQL takes it as it is)."""
    if value is None or is_postgres():
        return value
    return connection.ops.adapt_datetimefield_value(value)


def load_rows(table: str, columns: tuple[str, ...], rows) -> None:
    """Load rows of str, int or None into a table, in blocks: CSV COPY on PostgreSQL, executemany on SQLite.

    CSV (not COPY's text format) because the csv module quotes in C. CSV COPY reads an unquoted empty field as NULL,
    so rows must give None, never "", for an empty cell (both backends then agree).
    """
    names = ", ".join(columns)
    with connection.cursor() as cur:
        if is_postgres():
            with cur.cursor.copy(f"COPY {table} ({names}) FROM STDIN WITH (FORMAT csv)") as copy:
                for block in _blocks(rows):
                    buffer = io.StringIO()
                    csv.writer(buffer, lineterminator="\n").writerows(block)
                    copy.write(buffer.getvalue())
            cur.execute(f"ANALYZE {table}")  # the joins that check the rows then plan from real figures
            return
        marks = ", ".join(["%s"] * len(columns))
        for block in _blocks(rows):
            cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", block)


def _blocks(rows):
    block = []
    for row in rows:
        block.append(row)
        if len(block) >= BLOCK_ROWS:
            yield block
            block = []
    if block:
        yield block
