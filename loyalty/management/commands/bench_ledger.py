"""Measure the ledger: single posts one by one (each its own transaction, as an admin action makes them) and the bulk
path, on the configured database. Prints entries/s for both, with JSON on the last line.

It writes real members and entries (the ledger is append-only): point it at a database made for benchmarks.
"""

import json
import time
import uuid

from django.core.management.base import BaseCommand
from django.db import connection

from loyalty.actors import SystemActor
from loyalty.models import Member
from loyalty.selectors import ledger_differences
from loyalty.services import Posting, entries_post_bulk, points_adjust

ACTOR = SystemActor("bench_ledger")


class Command(BaseCommand):
    help = "Benchmark single and bulk ledger posts on the configured database (JSON on the last line)."

    def add_arguments(self, parser):
        parser.add_argument("--single", type=int, default=3000, help="Entries posted one by one.")
        parser.add_argument("--bulk", type=int, default=300_000, help="Entries posted through the bulk path.")
        parser.add_argument("--members", type=int, default=1000, help="Members the entries are spread over.")

    def handle(self, *args, single, bulk, members, **options):
        run = uuid.uuid4().hex[:8]
        member_ids = self._members(run, members)
        single_s = self._single(member_ids, single)
        bulk_s = self._bulk(member_ids, bulk, run)
        clean = not ledger_differences(limit=10)
        figures = {
            "database": connection.vendor,
            "single_n": single,
            "single_s": round(single_s, 3),
            "single_per_s": round(single / single_s, 1),
            "bulk_n": bulk,
            "bulk_s": round(bulk_s, 3),
            "bulk_per_s": round(bulk / bulk_s, 1),
            "goal_single_per_s": 1000,
            "goal_bulk_per_s": 100_000,
            "reconciles": clean,
        }
        self.stdout.write(f"single posts: {single} in {single_s:.2f}s = {figures['single_per_s']:,} entries/s")
        self.stdout.write(f"bulk path:    {bulk} in {bulk_s:.2f}s = {figures['bulk_per_s']:,} entries/s")
        self.stdout.write(json.dumps(figures))

    def _members(self, run, count):
        Member.objects.bulk_create(
            [Member(email=f"bench-{run}-{i}@bench.example") for i in range(count)], batch_size=5000
        )
        return list(Member.objects.filter(email__startswith=f"bench-{run}-").values_list("id", flat=True))

    def _single(self, member_ids, count):
        start = time.perf_counter()
        for i in range(count):
            points_adjust(
                member=member_ids[i % len(member_ids)], points=10 + i % 50, reason="bench single", actor=ACTOR
            )
        return time.perf_counter() - start

    def _bulk(self, member_ids, count, run):
        postings = [
            Posting(member_ids[i % len(member_ids)], 5 + i % 40, "bench bulk", idempotency_key=f"bench:{run}:{i}")
            for i in range(count)
        ]
        start = time.perf_counter()
        result = entries_post_bulk(postings=postings, actor=ACTOR, source="system", policy="forbid")
        elapsed = time.perf_counter() - start
        if result.posted != count:
            raise SystemExit(f"bulk posted {result.posted} of {count}")
        return elapsed
