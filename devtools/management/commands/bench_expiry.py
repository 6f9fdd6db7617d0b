"""Measure expiry at scale: the run (and its dry run) against the ledger's write floor for the same number of
expiration entries, the liability report and the dashboard. JSON on the last line.

It makes `--members` members with `--entries-per-member` entries each (K-1 earnings spread over the last 630 days, in
the order they happened, then one debit), through the ledger's bulk path with dated postings (set-based SQL, no
Python row per entry), sets the policy "12 months after earning", analyses the tables, and then measures, in one run
(each timed part after a CHECKPOINT, `settled` in the JSON):
* dry_run_s: `expire_points --dry-run` (what would expire, counted);
* run_s: `expire_points` (one expiration entry per member through the bulk path; spending moves each member's
  spent points along their line of batches, so no batch is written);
* run_floor_s: the ledger floor (devtools/bench_floor.py) for as many ready-made entries as the run posted, the
  median of three (run_floor_samples_s);
* report_ms / dashboard_ms: the liability report's and the dashboard's server time (their queries and, for the
  dashboard, the SVG charts), the median of three, after what the nightly job does once a run posted
  (daily_totals_s: the daily totals summed to their new mark);
* reconciles: reconcile_ledger's check (figures and the line of batches) after the run.
It writes real members and entries (the ledger is append-only): point it at a database made for benchmarks.
"""

import json
import os
import statistics
import time
import uuid

from django.core.management.base import BaseCommand
from django.db import DatabaseError, connection
from django.utils import timezone

from devtools.bench_data import make_members, minus_days, series
from devtools.bench_floor import ledger_write_floor_s
from loyalty import charts
from loyalty.actors import SystemActor
from loyalty.management.arguments import positive_int
from loyalty.models import EntryKind, ProgramSettings
from loyalty.profiling import rounded, step_profile
from loyalty.selectors import ledger_differences
from loyalty.selectors_liability import dashboard_figures, liability_on
from loyalty.services import PostingsQuery, entries_post_bulk
from loyalty.services.expiry import points_expire
from loyalty.services.totals import after_expiry_run

ACTOR = SystemActor("bench_expiry")
CHUNK = 50_000  # members per bulk call while the data is made


class Command(BaseCommand):
    help = "Benchmark the expiry run, its floor, the liability report and the dashboard (JSON on the last line)."

    def add_arguments(self, parser):
        parser.add_argument("--members", type=positive_int, default=200_000)
        parser.add_argument("--entries-per-member", type=positive_int, default=10)

    def handle(self, *args, members, entries_per_member, **options):
        if entries_per_member < 2:
            raise SystemExit("--entries-per-member must be 2 or more (earnings, then one debit).")
        tag = uuid.uuid4().hex[:8]
        started = time.perf_counter()
        lo, hi = make_members(members, tag, timezone.now())
        self._history(lo, hi, entries_per_member)
        made_s = time.perf_counter() - started
        ProgramSettings.load()
        ProgramSettings.objects.filter(pk=1).update(
            expiry_policy="after_earning", expiry_period=12, expiry_unit="months"
        )
        self.stdout.write(f"made {members:,} members with {entries_per_member} entries each in {made_s:.1f}s")

        settled = _settle(analyze=True)
        dry_run_s, dry = _timed(lambda: points_expire(dry_run=True))
        _settle()
        with step_profile() as steps:
            run_s, run = _timed(points_expire)
        self.stdout.write(f"dry run: {dry.summary()} in {dry_run_s:.2f}s")
        self.stdout.write(f"run:     {run.summary()} in {run_s:.2f}s")
        member_ids = list(range(lo, hi + 1))
        # The floor's own spread between runs on one database (3.8-5.2 s at 200,000 entries) is wider than the run's:
        # the median of three, each from a checkpoint.
        floor_samples = []
        for _ in range(3):
            _settle()
            floor_samples.append(ledger_write_floor_s(member_ids, max(run.posted, 1)))
        floor_s = statistics.median(floor_samples)
        # What the nightly job does after a run: the daily totals brought up to date.
        daily_totals_s, _days = _timed(after_expiry_run)
        report_ms = _median_ms(liability_on)
        dashboard_ms = _median_ms(_dashboard)
        reconciles = not ledger_differences(limit=10)
        figures = {
            "database": connection.vendor,
            "members": members,
            "entries_per_member": entries_per_member,
            "expired_members": run.posted,
            "expired_points": run.points,
            "dry_run_s": round(dry_run_s, 3),
            "run_s": round(run_s, 3),
            "run_floor_s": round(floor_s, 3),
            "run_floor_samples_s": [round(f, 3) for f in floor_samples],
            "run_vs_floor": round(run_s / floor_s, 2) if floor_s else None,
            "report_ms": report_ms,
            "dashboard_ms": dashboard_ms,
            "daily_totals_s": round(daily_totals_s, 3),
            "reconciles": reconciles,
            # Seconds by step of the run (loyalty/profiling.py): the bulk path's steps.
            "profile_run_s": rounded(steps, run_s),
            "goal_run_vs_floor": 2.0,
            "goal_page_ms": 500,
            "load_average_1m": os.getloadavg()[0],
            "settled": settled,
        }
        self.stdout.write(json.dumps(figures))

    def _history(self, lo: int, hi: int, per_member: int) -> None:
        """K-1 earnings per member spread over 30-630 days ago (about 45% older than a year), then one debit. A
        history load posts each member's rows in the order they happened (the order batches are spent in): the
        earnings go from the oldest, 600 days spread evenly over them, each moved by a member's own 0-59 days."""
        now = timezone.now()
        at = connection.ops.adapt_datetimefield_value(now)
        step = 600 // max(per_member - 1, 1)
        earned_days = f"CAST(30 + ((m.id * 31) %% {step}) + ({per_member - 1} - g.n) * {step} AS integer)"
        for start in range(lo, hi + 1, CHUNK):
            stop = min(start + CHUNK - 1, hi)
            earnings = PostingsQuery(
                sql=f"""SELECT m.id * {per_member} + g.n AS seq, m.id AS member_id,
                               20 + ((m.id * 7 + g.n * 13) %% 80) AS points, 'bench earning' AS reason,
                               NULL AS idempotency_key, 'active' AS status, NULL AS hold_until,
                               NULL AS earn_rule_id, {minus_days(earned_days, "%s")} AS at
                        FROM loyalty_member m CROSS JOIN {series(per_member - 1)}
                        WHERE m.id BETWEEN %s AND %s""",
                params=[at, start, stop],
                kind=EntryKind.EARN,
                with_at=True,
            )
            debits = PostingsQuery(
                sql=f"""SELECT m.id * {per_member} + {per_member} AS seq, m.id AS member_id,
                               -(5 + m.id %% 30) AS points, 'bench debit' AS reason, NULL AS idempotency_key,
                               'active' AS status, NULL AS hold_until, NULL AS earn_rule_id,
                               {minus_days("CAST(10 AS integer)", "%s")} AS at
                        FROM loyalty_member m WHERE m.id BETWEEN %s AND %s""",
                params=[at, start, stop],
                kind=EntryKind.ADJUSTMENT,
                with_at=True,
            )
            entries_post_bulk(queries=[earnings], actor=ACTOR, source="system", policy="allow")
            entries_post_bulk(queries=[debits], actor=ACTOR, source="system", policy="allow")


def _settle(analyze: bool = False) -> bool:
    """Start a measured part from a settled database (PostgreSQL): the data just loaded analysed, as autovacuum would
    have it before a nightly run, and a CHECKPOINT, so that neither the run nor the floor pays for writing out the
    pages the part before it dirtied (a checkpoint that fell inside one part or the other moved the run's ratio to its
    floor between 1.8 and 2.9 on the same data). Returns whether the checkpoint ran (it needs the pg_checkpoint
    role or a superuser); the bench goes on without it."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cur:
        if analyze:
            cur.execute("ANALYZE")
        try:
            cur.execute("CHECKPOINT")
        except DatabaseError:
            return False
    return True


def _timed(call):
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def _median_ms(call, times: int = 3) -> float:
    return round(statistics.median(_timed(call)[0] for _ in range(times)) * 1000, 1)


def _dashboard():
    board = dashboard_figures()
    return [
        draw(board)
        for draw in (charts.weekly_flows, charts.outstanding, charts.members_by_tier, charts.top_sources, charts.health)
    ]
