"""Measure the ledger: single posts one by one (each its own transaction, as an admin action makes them) and the bulk
path, on the configured database. Prints entries/s for both, with JSON on the last line.

Single posts are measured as the admin makes them in production: several sessions at once (web workers serving several
agents), each posting one entry per transaction with an idempotency key, as the admin's adjust action does. A durable
commit waits for the disk (fsync); concurrent sessions share
those waits (PostgreSQL's group commit), so the figure with --sessions 1 is bounded by the disk's fsyncs per second and
is printed beside it.

It writes real members and entries (the ledger is append-only): point it at a database made for benchmarks.
"""

import json
import multiprocessing
import os
import time
import uuid

from django.core.management.base import BaseCommand
from django.db import connection, connections

from devtools.bench_floor import ledger_write_floor_s
from loyalty.actors import SystemActor
from loyalty.management.arguments import positive_int
from loyalty.models import Member
from loyalty.profiling import rounded, step_profile
from loyalty.selectors import ledger_differences
from loyalty.services import Posting, entries_post_bulk, points_adjust
from loyalty.services.members import new_member_tier_id

ACTOR = SystemActor("bench_ledger")


class Command(BaseCommand):
    help = "Benchmark single and bulk ledger posts on the configured database (JSON on the last line)."

    def add_arguments(self, parser):
        parser.add_argument("--single", type=positive_int, default=3000, help="Entries posted one by one.")
        parser.add_argument("--bulk", type=positive_int, default=300_000, help="Entries posted through the bulk path.")
        parser.add_argument("--members", type=positive_int, default=1000, help="Members the entries are spread over.")
        parser.add_argument(
            "--sessions", type=positive_int, default=8, help="Concurrent sessions posting single entries."
        )

    def handle(self, *args, single, bulk, members, sessions, **options):
        run = uuid.uuid4().hex[:8]
        member_ids = self._members(run, members)
        if connection.vendor == "sqlite":
            sessions = 1  # SQLite has one writer at a time
        one_session_n = max(single // 10, 100)
        one_session_s = self._single_in_sessions(member_ids, one_session_n, 1, f"{run}-one")
        single_s = self._single_in_sessions(member_ids, single, sessions, run)
        bulk_s = self._bulk(member_ids, bulk, run)
        clean = not ledger_differences(limit=10)
        floor_s = ledger_write_floor_s(member_ids, bulk)
        lean_floor_s = ledger_write_floor_s(member_ids, bulk, required_only=True)
        # The bench posts credits: each opens a batch (loyalty.services.batches), which the floor writes too.
        batches_floor_s = ledger_write_floor_s(member_ids, bulk, with_batches=True)
        lean_batches_floor_s = ledger_write_floor_s(member_ids, bulk, required_only=True, with_batches=True)
        figures = {
            "database": connection.vendor,
            "single_n": single,
            "single_sessions": sessions,
            "single_s": round(single_s, 3),
            "single_per_s": round(single / single_s, 1),
            "single_one_session_per_s": round(one_session_n / one_session_s, 1),
            "bulk_n": bulk,
            "bulk_s": round(bulk_s, 3),
            "bulk_per_s": round(bulk / bulk_s, 1),
            # The same number of ready-made entries written straight into a copy of the ledger: the most any bulk
            # path can reach on this machine with the ledger's indexes and guards (see loyalty/bench_floor.py).
            "bulk_floor_per_s": round(bulk / floor_s, 1),
            # The same into a copy keeping only the keys, links, index and foreign keys the ledger's spec requires.
            "bulk_floor_required_guards_per_s": round(bulk / lean_floor_s, 1),
            # The goal, a ratio measured in this run: the bulk path at least 0.8 of the floor with the required guards.
            "bulk_vs_floor": round(lean_floor_s / bulk_s, 3),
            "bulk_vs_floor_all_indexes": round(floor_s / bulk_s, 3),
            # The floor of this ledger for credits: ready-made entries and the batch each opens (bench_floor.py).
            "bulk_floor_with_batches_per_s": round(bulk / batches_floor_s, 1),
            "bulk_floor_with_batches_required_guards_per_s": round(bulk / lean_batches_floor_s, 1),
            "bulk_vs_floor_with_batches": round(lean_batches_floor_s / bulk_s, 3),
            "bulk_vs_floor_with_batches_all_indexes": round(batches_floor_s / bulk_s, 3),
            "goal_bulk_vs_floor": 0.8,
            "goal_single_per_s": 1000,
            "goal_bulk_per_s": 100_000,
            "reconciles": clean,
            # Seconds by step of the bulk post (loyalty/profiling.py); checks: the commit's deferred foreign keys.
            "profile_bulk_s": self.bulk_steps,
            "load_average_1m": os.getloadavg()[0],
        }
        self.stdout.write(
            f"single posts: {single} by {sessions} sessions in {single_s:.2f}s = {figures['single_per_s']:,} entries/s "
            f"(one session alone: {figures['single_one_session_per_s']:,}/s)"
        )
        self.stdout.write(f"bulk path:    {bulk} in {bulk_s:.2f}s = {figures['bulk_per_s']:,} entries/s")
        self.stdout.write(
            f"ledger floor: {bulk} ready-made entries into a copy of the ledger in {floor_s:.2f}s = "
            f"{figures['bulk_floor_per_s']:,} entries/s (no rules, same indexes and foreign keys); "
            f"{figures['bulk_floor_required_guards_per_s']:,} entries/s with only the required guards; "
            f"the bulk path is {figures['bulk_vs_floor']} of it (goal 0.8)"
        )
        self.stdout.write(
            f"with batches: the same entries and the batch each opens in {batches_floor_s:.2f}s = "
            f"{figures['bulk_floor_with_batches_per_s']:,} entries/s; "
            f"{figures['bulk_floor_with_batches_required_guards_per_s']:,} entries/s with only the required guards; "
            f"the bulk path is {figures['bulk_vs_floor_with_batches']} of it"
        )
        self.stdout.write(json.dumps(figures))

    def _members(self, run, count):
        tier_id = new_member_tier_id()
        Member.objects.bulk_create(
            [Member(email=f"bench-{run}-{i}@bench.example", tier_id=tier_id) for i in range(count)], batch_size=5000
        )
        return list(Member.objects.filter(email__startswith=f"bench-{run}-").values_list("id", flat=True))

    def _single_in_sessions(self, member_ids, count, sessions, run):
        """Post `count` entries one per transaction, split over `sessions` processes (each its own connection)."""
        start = time.perf_counter()
        if sessions <= 1:
            posted = _post_singles(member_ids, range(count), run)
        else:
            connections.close_all()  # each process opens its own connection
            shares = [range(i, count, sessions) for i in range(sessions)]
            with multiprocessing.get_context("fork").Pool(sessions) as pool:
                posted = sum(pool.starmap(_post_singles, [(member_ids, share, run) for share in shares]))
        elapsed = time.perf_counter() - start
        if posted != count:
            raise SystemExit(f"single posts: {posted} of {count} posted")
        return elapsed

    def _bulk(self, member_ids, count, run):
        postings = [
            Posting(member_ids[i % len(member_ids)], 5 + i % 40, "bench bulk", idempotency_key=f"bench:{run}:{i}")
            for i in range(count)
        ]
        start = time.perf_counter()
        with step_profile() as steps:
            result = entries_post_bulk(postings=postings, actor=ACTOR, source="system", policy="forbid")
        elapsed = time.perf_counter() - start
        if result.posted != count:
            raise SystemExit(f"bulk posted {result.posted} of {count}")
        self.bulk_steps = rounded(steps, elapsed)
        return elapsed


def _post_singles(member_ids, indexes, run):
    """Each post carries an idempotency key, as the admin's adjust action gives every member it adjusts."""
    connections.close_all()
    posted = 0
    for i in indexes:
        member_id = member_ids[i % len(member_ids)]
        key = f"admin:bench-{run}-{i}:{member_id}"
        result = points_adjust(
            member=member_id, points=10 + i % 50, reason="bench single", actor=ACTOR, idempotency_key=key
        )
        posted += result.posted
    connections.close_all()
    return posted
