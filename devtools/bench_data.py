"""Pre-program history for the benchmarks, made with set-based SQL (generate_series on PostgreSQL, a recursive CTE
on SQLite): members (one in five a guest) who joined before `start`, and paid orders placed before it, spread over
them with a fixed stride so every run spreads them the same way."""

from datetime import timedelta

from django.db import connection, transaction

from loyalty.services.members import new_member_tier_id


def series(count: int) -> str:
    """A relation of the numbers 1..count as column n."""
    if connection.vendor == "postgresql":
        return f"generate_series(1, {int(count)}) AS g(n)"
    return f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {int(count)}) SELECT n FROM s) g"


def minus_days(column_days: str, start: str) -> str:
    if connection.vendor == "postgresql":
        return f"{start} - make_interval(days => {column_days})"
    return f"strftime('%Y-%m-%d %H:%M:%f', {start}, '-' || ({column_days}) || ' days')"


def make_members(count: int, tag: str, start) -> tuple[int, int]:
    """Insert members in one statement; returns the id range they got. (%% is a literal % next to parameters.)"""
    at = connection.ops.adapt_datetimefield_value(start - timedelta(days=1))
    joined = minus_days("(n %% 900)", "%s")
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM loyalty_member")
        before = cur.fetchone()[0]
        cur.execute(
            f"""INSERT INTO loyalty_member (email, customer_id, first_name, last_name, signed_up_at,
                    available_points, pending_points, lifetime_points, tier_id, created_at)
                SELECT 'bench' || %s || '-' || n || '@bench.example', NULL, 'Bench', 'Member',
                       CASE WHEN n %% 5 = 0 THEN NULL ELSE {joined} END, 0, 0, 0, %s, %s
                FROM {series(count)}""",
            [tag, at, new_member_tier_id(), at],
        )
        cur.execute("SELECT MIN(id), MAX(id) FROM loyalty_member WHERE id > %s", [before])
        return cur.fetchone()


def make_orders(count: int, tag: str, start, lo: int, hi: int) -> None:
    """Insert orders spread over the new members (a fixed stride, so the spread is the same every time)."""
    at = connection.ops.adapt_datetimefield_value(start - timedelta(hours=1))
    placed = minus_days("(n %% 700)", "%s")
    span = hi - lo + 1
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            f"""INSERT INTO loyalty_order (store, store_order_id, order_number, member_id, email, customer_id,
                    total, earnable_amount, currency, financial_status, cancelled, tags, placed_at, updated_at,
                    test)
                SELECT 'csv', 'bench-' || %s || '-' || n, '', {lo} + (CAST(n AS bigint) * 7919) %% {span}, '', '',
                       15 + (n * 37) %% 400, NULL, 'USD', 'paid', FALSE, '', {placed}, %s, FALSE
                FROM {series(count)}""",
            [tag, at, at],
        )
