"""manage.py bench_rfm --members N --orders M: time an RFM refresh over N members with orders.

Makes N members and M paid orders spread over them (the same set-based history as bench_backfill), then times
`rfm_refresh` twice: the first fills the scores, the second replaces them, as the nightly job does. Scores are checked
against the quintile rule before the figures are printed: every score is 1-5, the five groups of each score are
within one member of each other in size, and every scored member has a segment. JSON on the last line.

It writes real members and orders: point it at a database made for benchmarks.
"""

import json
import os
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from devtools.bench_data import make_members, make_orders
from loyalty.management.arguments import positive_int
from loyalty.models import MemberRFM, RFMSegment
from loyalty.services.rfm import rfm_refresh


class Command(BaseCommand):
    help = "Benchmark the RFM refresh: make N members and M orders, time two refreshes (JSON on the last line)."

    def add_arguments(self, parser):
        parser.add_argument("--members", type=positive_int, default=1_000_000)
        parser.add_argument("--orders", type=positive_int, default=3_000_000)

    def handle(self, *args, members, orders, **options):
        made, tag, start = time.monotonic(), f"rfm{int(time.time())}", timezone.now()
        lo, hi = make_members(members, tag, start)
        make_orders(orders, tag, start, lo, hi)
        self.stdout.write(f"made {members:,} members and {orders:,} orders in {time.monotonic() - made:.1f} s")
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute("ANALYZE")  # fresh statistics, as autovacuum would give a real store's tables
        timings = []
        for _ in range(2):
            began = time.monotonic()
            result = rfm_refresh()
            timings.append(time.monotonic() - began)
        self._check_quintiles(result.members_scored)
        figures = {
            "members": members,
            "orders": orders,
            "members_scored": result.members_scored,
            "first_refresh_s": round(timings[0], 3),
            "refresh_s": round(timings[1], 3),
            "by_segment": result.by_segment,
            "database": connection.vendor,
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        self.stdout.write(f"RFM refresh of {result.members_scored:,} scored members: {timings[1]:.2f} s")
        self.stdout.write(json.dumps(figures))

    def _check_quintiles(self, scored: int) -> None:
        for score in ("recency", "frequency", "monetary"):
            sizes = dict(MemberRFM.objects.values_list(score).annotate(n=Count("pk")).values_list(score, "n"))
            if set(sizes) != {1, 2, 3, 4, 5} or max(sizes.values()) - min(sizes.values()) > 1:
                raise CommandError(f"{score} scores are not quintiles: {sizes}")
        if MemberRFM.objects.exclude(segment__in=RFMSegment.values).exists() or MemberRFM.objects.count() != scored:
            raise CommandError("some scored members have no segment")
