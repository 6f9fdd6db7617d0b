"""Reading back a PostgreSQL timestamp that Python cannot hold, instead of failing every page that shows it.

PostgreSQL stores years up to 294276 and before year 1 (BC); Python's datetime holds years 1 to 9999. A member
signed up "9999-12-31T23:59:59-14:00" is year 10000 in UTC: before the import and webhook checks refused such dates
(1900-2100), a database could take one in, and then every list, page, search and export that read the row failed.
Such a value is read as the edge Python can hold (9999-12-30 or 0001-01-02 UTC, a day inside so that any time zone
can still show it); every other value is read exactly as before.
"""

from datetime import UTC, datetime

LATEST = datetime(9999, 12, 30, tzinfo=UTC)
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)


def out_of_range_edge(data: bytes) -> datetime:
    """The edge for a timestamp's text PostgreSQL sent: BC dates are before year 1, the others after 9999."""
    return EARLIEST if bytes(data).rstrip().endswith(b"BC") else LATEST


def register_safe_timestamp_loader(sender, connection, **kwargs) -> None:
    """A connection_created receiver: on PostgreSQL (psycopg 3), wrap the timestamptz loader Django registered."""
    if connection.vendor != "postgresql":
        return
    from psycopg import DataError
    from psycopg.postgres import types
    from psycopg.pq import Format

    adapters = connection.connection.adapters
    oid = types["timestamptz"].oid
    django_loader = adapters.get_loader(oid, Format.TEXT)

    class ClampedTimestamptzLoader(django_loader):
        def load(self, data):
            try:
                return super().load(data)
            except DataError:
                return out_of_range_edge(data).replace(tzinfo=self.timezone)

    adapters.register_loader("timestamptz", ClampedTimestamptzLoader)
