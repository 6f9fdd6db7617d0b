"""manage.py bench_backfill --members N --orders M: make pre-program history, time the preview and the run.

The data is made with set-based SQL (generate_series on PostgreSQL, a recursive CTE on SQLite): N members (one in
five a guest) who joined before the program started, and M paid orders placed before it, spread over them. The last
line of output is one JSON object: members, orders, preview_s, run_s (and what the run credited).
"""

import json
import time
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.utils import timezone

from imports.services.backfill import backfill_preview, backfill_run_apply, backfill_run_create
from loyalty.actors import SystemActor
from loyalty.models import EarnRule, EarnRuleKind, ProgramSettings
from tiers.models import Tier


def _series(count: int) -> str:
    """A relation of the numbers 1..count as column n."""
    if connection.vendor == "postgresql":
        return f"generate_series(1, {int(count)}) AS g(n)"
    return f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {int(count)}) SELECT n FROM s) g"


def _minus_days(column_days: str, start: str) -> str:
    if connection.vendor == "postgresql":
        return f"{start} - make_interval(days => {column_days})"
    return f"strftime('%Y-%m-%d %H:%M:%f', {start}, '-' || ({column_days}) || ' days')"


class Command(BaseCommand):
    help = "Benchmark Reward past actions: make N members and M orders before the program started, time it."

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=200_000)
        parser.add_argument("--orders", type=int, default=1_000_000)

    def handle(self, *args, members, orders, **options):
        tag = str(int(time.time()))
        start = timezone.now()
        self._program(start)
        made = time.monotonic()
        lo, hi = self._members(members, tag, start)
        self._orders(orders, tag, start, lo, hi)
        self.stdout.write(f"made {members:,} members and {orders:,} orders in {time.monotonic() - made:.1f} s")
        with connection.cursor() as cur:
            cur.execute("ANALYZE")  # fresh statistics, as autovacuum would give a real store's tables

        began = time.monotonic()
        preview = backfill_preview()
        preview_s = time.monotonic() - began
        self.stdout.write(f"preview: {preview.members:,} members, {preview.orders:,} orders, {preview.points:,} points")

        began = time.monotonic()
        run = backfill_run_create(actor=SystemActor("bench_backfill"), queue=False)
        run = backfill_run_apply(run_id=run.pk)
        run_s = time.monotonic() - began
        self.stdout.write(
            json.dumps(
                {
                    "members": members,
                    "orders": orders,
                    "preview_s": round(preview_s, 2),
                    "run_s": round(run_s, 2),
                    "members_credited": run.members_credited,
                    "orders_credited": run.orders_credited,
                    "points_credited": run.points_credited,
                    "database": connection.vendor,
                }
            )
        )

    def _program(self, start):
        ProgramSettings.load()
        ProgramSettings.objects.filter(pk=1).update(program_started_at=start, hold_days_default=0)
        for name, threshold in (("Bronze", 0), ("Silver", 500), ("Gold", 2000)):
            Tier.objects.get_or_create(name=name, defaults={"threshold": threshold})
        EarnRule.objects.get_or_create(
            name="Sign up", kind=EarnRuleKind.SIGNUP, defaults={"points": 200, "hold_days": 14}
        )
        EarnRule.objects.get_or_create(
            name="Place an order",
            kind=EarnRuleKind.ORDER,
            defaults={"points_per_currency_unit": Decimal("1"), "hold_days": 14},
        )

    def _members(self, count: int, tag: str, start) -> tuple[int, int]:
        """Insert members in one statement; returns the id range they got. (%% is a literal % next to parameters.)"""
        at = connection.ops.adapt_datetimefield_value(start - timedelta(days=1))
        joined = _minus_days("(n %% 900)", "%s")
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SELECT COALESCE(MAX(id), 0) FROM loyalty_member")
            before = cur.fetchone()[0]
            cur.execute(
                f"""INSERT INTO loyalty_member (email, customer_id, first_name, last_name, signed_up_at,
                        available_points, pending_points, lifetime_points, created_at)
                    SELECT 'bench' || %s || '-' || n || '@bench.example', NULL, 'Bench', 'Member',
                           CASE WHEN n %% 5 = 0 THEN NULL ELSE {joined} END, 0, 0, 0, %s
                    FROM {_series(count)}""",
                [tag, at, at],
            )
            cur.execute("SELECT MIN(id), MAX(id) FROM loyalty_member WHERE id > %s", [before])
            return cur.fetchone()

    def _orders(self, count: int, tag: str, start, lo: int, hi: int) -> None:
        """Insert orders spread over the new members (a fixed stride, so the spread is the same every time)."""
        at = connection.ops.adapt_datetimefield_value(start - timedelta(hours=1))
        placed = _minus_days("(n %% 700)", "%s")
        span = hi - lo + 1
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(
                f"""INSERT INTO loyalty_order (store, store_order_id, order_number, member_id, email, customer_id,
                        total, earnable_amount, currency, financial_status, cancelled, tags, placed_at, updated_at,
                        test)
                    SELECT 'csv', 'bench-' || %s || '-' || n, '', {lo} + (CAST(n AS bigint) * 7919) %% {span}, '', '',
                           15 + (n * 37) %% 400, NULL, 'USD', 'paid', FALSE, '', {placed}, %s, FALSE
                    FROM {_series(count)}""",
                [tag, at, at],
            )
