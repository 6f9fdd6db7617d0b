"""Small SQL helpers for the import's own tables (PostgreSQL and SQLite)."""

from django.db import connection

# Column types by backend: staging tables hold typed values, parsed and validated in Python.
TYPES = {
    "postgresql": {"int": "bigint", "text": "text", "ts": "timestamptz", "bool": "boolean"},
    "sqlite": {"int": "integer", "text": "text", "ts": "datetime", "bool": "bool"},
}


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def execute(sql: str, params=None) -> int:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return cur.rowcount


def rows(sql: str, params=None) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return cur.fetchall()


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
