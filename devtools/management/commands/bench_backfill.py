"""manage.py bench_backfill --members N --orders M: make pre-program history, time the preview and the run.

The data is made with set-based SQL (generate_series on PostgreSQL, a recursive CTE on SQLite): N members (one in
five a guest) who joined before the program started, and M paid orders placed before it, spread over them. The last
line of output is one JSON object: members, orders, preview_s, run_s (and what the run credited).
"""

import json
import os
import time
import uuid
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from devtools.bench_data import make_members, make_orders
from devtools.bench_floor import ledger_write_floor_s
from imports.models import BackfillStatus
from imports.services.backfill import backfill_preview, backfill_run_apply, backfill_run_create
from loyalty.actors import SystemActor
from loyalty.management.arguments import positive_int
from loyalty.models import EarnRule, EarnRuleKind, ProgramSettings
from loyalty.profiling import rounded, step_profile
from tiers.models import Tier


class Command(BaseCommand):
    help = "Benchmark Reward past actions: make N members and M orders before the program started, time it."

    def add_arguments(self, parser):
        parser.add_argument("--members", type=positive_int, default=200_000)
        parser.add_argument("--orders", type=positive_int, default=1_000_000)
        parser.add_argument(
            "--workers",
            type=int,
            default=0,
            help="0: apply the ranges in this process, profiled by step; N: start N Celery worker processes "
            "(configured broker) and time the run's tasks on them.",
        )
        parser.add_argument("--range-members", type=positive_int, help="Member ids per range (BACKFILL_RANGE_MEMBERS).")

    def handle(self, *args, members, orders, workers, range_members, **options):
        tag = str(int(time.time()))
        start = timezone.now()
        self._program(start)
        made = time.monotonic()
        lo, hi = make_members(members, tag, start)
        make_orders(orders, tag, start, lo, hi)
        self.stdout.write(f"made {members:,} members and {orders:,} orders in {time.monotonic() - made:.1f} s")
        with connection.cursor() as cur:
            cur.execute("ANALYZE")  # fresh statistics, as autovacuum would give a real store's tables

        began = time.monotonic()
        with step_profile() as preview_steps:
            preview = backfill_preview()
        preview_s = time.monotonic() - began
        self.stdout.write(f"preview: {preview.members:,} members, {preview.orders:,} orders, {preview.points:,} points")

        if range_members:
            settings.BACKFILL_RANGE_MEMBERS = range_members
        if workers:
            run, run_s = self._run_on_workers(workers)
            run_steps = {}
        else:
            began = time.monotonic()
            with step_profile() as run_steps:
                run = backfill_run_create(actor=SystemActor("bench_backfill"), queue=False)
                run = backfill_run_apply(run_id=run.pk)
            run_s = time.monotonic() - began
            self.stdout.write(f"run by step (s): {rounded(run_steps, run_s)}")
        if run.status != BackfillStatus.DONE:
            raise CommandError(f"run #{run.pk} ended {run.status}: {run.error}")
        entries = run.members_credited + run.orders_credited
        floor_s = self._ledger_floor(lo, hi, entries)
        lean_floor_s = self._ledger_floor(lo, hi, entries, required_only=True)
        # Its entries are earnings made active: each opens its batch (points expire by batch), as this floor writes.
        batches_floor_s = self._ledger_floor(lo, hi, entries, required_only=True, with_batches=True)
        if floor_s:
            self.stdout.write(
                f"ledger floor: {entries:,} ready-made entries into a copy of the ledger in {floor_s:.2f} s "
                f"(no rules, same indexes and foreign keys); {lean_floor_s:.2f} s with only the required guards"
            )
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
                    # The run's entries ready-made, straight into a copy of the ledger: the least time any run can
                    # take on this machine with the ledger's indexes and guards (see loyalty/bench_floor.py).
                    "ledger_floor_s": round(floor_s, 2) if floor_s else None,
                    # The same into a copy keeping only the keys, links, index and foreign keys the spec requires.
                    "ledger_floor_required_guards_s": round(lean_floor_s, 2) if lean_floor_s else None,
                    # The goals as ratios to the floor with the required guards, measured in this run: the run within
                    # 1.5x of it, the preview within 0.1x.
                    "run_vs_floor": round(run_s / lean_floor_s, 3) if lean_floor_s else None,
                    "preview_vs_floor": round(preview_s / lean_floor_s, 3) if lean_floor_s else None,
                    "goal_run_vs_floor": 1.5,
                    # The same entries and the batch each opens, with the required guards of both tables.
                    "ledger_floor_with_batches_required_guards_s": round(batches_floor_s, 2)
                    if batches_floor_s
                    else None,
                    "run_vs_floor_with_batches": round(run_s / batches_floor_s, 3) if batches_floor_s else None,
                    "goal_preview_vs_floor": 0.1,
                    # Seconds by step of the run (loyalty/profiling.py): stage (the SELECT over members and orders into
                    # the staging table), resolve, lock, entries, tiers, balances, checks (deferred foreign keys).
                    "profile_run_s": rounded(run_steps, run_s) if run_steps else None,
                    # 0: the ranges one after another in this process (profiled); N: N Celery worker processes
                    # taking the ranges (imports.backfill_range tasks) from a queue of the bench's own.
                    "workers": workers,
                    "ranges": run.steps_total,
                    "range_members": settings.BACKFILL_RANGE_MEMBERS,
                    "profile_preview_s": rounded(preview_steps, preview_s),
                    "database": connection.vendor,
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                }
            )
        )

    def _run_on_workers(self, workers: int):
        """Start `workers` worker processes on a queue of the bench's own, queue the run, wait until it ends."""
        from config.celery import app

        from .bench_webhooks import drop_queue, start_worker, stop

        queue = f"bench-backfill-{uuid.uuid4().hex[:8]}"
        env = dict(os.environ)
        env.update(
            CELERY_TASK_DEFAULT_QUEUE=queue,
            CELERY_TASK_ALWAYS_EAGER="false",
            BACKFILL_RANGE_MEMBERS=str(settings.BACKFILL_RANGE_MEMBERS),
            PYTHONUNBUFFERED="1",
        )
        log_dir = Path(settings.VAR_DIR) / "bench_backfill"
        log_dir.mkdir(parents=True, exist_ok=True)
        app.conf.task_always_eager, app.conf.task_default_queue = False, queue
        procs = [start_worker(env, 1, log_dir / f"worker-{queue}-{n}.log") for n in range(workers)]
        try:
            deadline = time.monotonic() + 120  # the workers start (their import of Django), outside the timed run
            while len(app.control.ping(timeout=1)) < workers:
                if time.monotonic() > deadline or any(proc.poll() is not None for proc in procs):
                    raise CommandError(f"the workers did not start; see {log_dir}")
            began = time.monotonic()
            with transaction.atomic():
                run = backfill_run_create(actor=SystemActor("bench_backfill"), queue=True)
            while True:
                run.refresh_from_db()
                if run.status not in (BackfillStatus.QUEUED, BackfillStatus.RUNNING):
                    break
                if any(proc.poll() is not None for proc in procs):
                    raise CommandError(f"a worker exited early; see {log_dir}")
                time.sleep(0.1)
            return run, time.monotonic() - began
        finally:
            for proc in procs:
                stop(proc)
            drop_queue(queue)

    def _ledger_floor(
        self, lo: int, hi: int, entries: int, required_only: bool = False, with_batches: bool = False
    ) -> float | None:
        if not entries:
            return None
        return ledger_write_floor_s(
            list(range(lo, hi + 1)), entries, required_only=required_only, with_batches=with_batches
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
