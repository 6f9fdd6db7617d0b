"""Raw SQL for the set-based writers (the ledger's bulk path, its batches, the import's tables): a statement, its
rows, and loading many rows from Python the fastest way each database offers."""

from django.db import connection


def fill_table(table: str, columns: tuple[str, ...], rows) -> None:
    """Load rows into a table: COPY on PostgreSQL, executemany elsewhere."""
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
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


def execute(sql: str, params=None) -> int:
    """Run one statement; returns the rows it touched."""
    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return cur.rowcount


def rows(sql: str, params=None) -> list[tuple]:
    """Run one query; returns its rows."""
    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return cur.fetchall()
