"""Measure the back office's busiest pages on the configured database: server time and query count.

Runs the pages in-process with Django's test client, signed in as a support agent (a non-superuser, so permission
checks cost what they cost in real life), and prints the figures as JSON on the last line:
{"members": N, "entries": N, "pages": [{"name", "ms", "queries"}, ...], "load_average_1m": L}. "ms" is the median of
--repeat runs.
"""

import json
import os
import statistics
import time

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from loyalty.management.arguments import positive_int
from loyalty.models import LedgerEntry, Member
from tiers.models import Tier

BENCH_USER = "bench-agent"


class Command(BaseCommand):
    help = "Time the members list (first page, a search, filters), a member's page and the ledger list."

    def add_arguments(self, parser):
        parser.add_argument("--repeat", type=positive_int, default=5)

    def handle(self, *args, repeat, **options):
        member = self._busy_member()
        client = Client()
        client.force_login(self._agent())
        pages = [
            ("members list", "/admin/loyalty/member/"),
            ("members search by email", f"/admin/loyalty/member/?q={member.email}"),
            ("members search by name", f"/admin/loyalty/member/?q={member.last_name}"),
            ("members search by customer id", f"/admin/loyalty/member/?q={member.customer_id or member.pk}"),
            ("members filter by tier", f"/admin/loyalty/member/?tier__id__exact={self._top_tier_id()}"),
            ("members filter has pending", "/admin/loyalty/member/?pending=yes"),
            ("members filter guests", "/admin/loyalty/member/?account=guest"),
            ("member page", f"/admin/loyalty/member/{member.pk}/change/"),
            ("ledger entries list", "/admin/loyalty/ledgerentry/"),
            ("ledger entries pending", "/admin/loyalty/ledgerentry/?status__exact=pending"),
        ]
        results = [self._measure(client, name, url, repeat) for name, url in pages]
        for r in results:
            self.stdout.write(
                f"{r['name']:32} {r['ms']:8.1f} ms {r['queries']:3d} queries ({r['db_ms']} ms in the database)"
            )
        self.stdout.write(
            json.dumps(
                {
                    "members": self._estimate("loyalty_member"),
                    "entries": self._estimate("loyalty_ledgerentry"),
                    "pages": results,
                    "cpus": os.cpu_count(),
                    "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews the figures
                }
            )
        )

    def _measure(self, client, name, url, repeat):
        client.get(url)  # warm the connection, the caches and the templates
        times, queries = [], 0
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise CommandError(f"{url} answered {response.status_code}")
            queries = len(captured)
            db_ms = sum(float(q["time"]) for q in captured.captured_queries) * 1000
        return {
            "name": name,
            "url": url,
            "ms": round(statistics.median(times), 1),
            "queries": queries,
            "db_ms": round(db_ms, 1),
        }

    def _agent(self):
        user, created = User.objects.get_or_create(username=BENCH_USER, defaults={"is_staff": True})
        if created and (group := Group.objects.filter(name="Support agent").first()):
            user.groups.add(group)
        return user

    def _busy_member(self):
        """A member from the middle of the table, with a history."""
        top = Member.objects.order_by("-pk").values_list("pk", flat=True).first()
        if top is None:
            raise CommandError("No members: run manage.py seed_demo first.")
        member = Member.objects.filter(pk__lte=top // 2 or top).order_by("-pk").first()
        return member or Member.objects.get(pk=top)

    def _top_tier_id(self):
        return Tier.objects.order_by("-threshold").values_list("pk", flat=True).first() or 0

    def _estimate(self, table):
        """Row counts: the planner's estimate on PostgreSQL (a COUNT of ten million rows is not the point here)."""
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table])
                row = cur.fetchone()
                if row and row[0] > 0:
                    return row[0]
        model = Member if table == "loyalty_member" else LedgerEntry
        return model.objects.count()
