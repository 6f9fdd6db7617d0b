"""Benchmark of CSV imports on the configured database: ours, the raw COPY floor, and django-import-export.

Writes to the database it runs on (members bench*@bench.example and their entries): run it on a scratch database.
"""

import csv
import json
import os
import random
import tempfile
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from devtools.bench_floor import ledger_write_floor_s
from imports.management.commands.check_memory import peak_resident_mb
from imports.models import ImportStatus
from imports.services import sql
from imports.services.jobs import chunk_rows as chunk_rows_setting
from imports.services.jobs import import_job_apply, import_job_check, import_job_create
from imports.services.jobs import range_rows as range_rows_setting
from loyalty.management.arguments import positive_int
from loyalty.models import Member
from loyalty.profiling import rounded, step_profile
from tiers.models import Tier
from tiers.rules import tier_for_sql, tier_table

SAMPLE = 10_000


def peak_rss_mb() -> float:
    return round(peak_resident_mb(), 1)


def _load_average() -> str:
    """Other work on the machine shares its cores: the figures mean little without it."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return ""


class Command(BaseCommand):
    help = "Generate a points CSV of N rows over M members and time our import, the COPY floor and import-export."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=positive_int, default=100_000)
        parser.add_argument("--members", type=positive_int, default=20_000)
        parser.add_argument(
            "--sample", type=positive_int, default=SAMPLE, help="Rows of the django-import-export sample."
        )
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--chunk-rows", type=positive_int, help="Rows per apply chunk (default: IMPORT_CHUNK_ROWS)."
        )
        parser.add_argument(
            "--range-rows",
            type=positive_int,
            help="Rows per member range: a file of more rows applies in member ranges (default: IMPORT_RANGE_ROWS).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=0,
            help="0: apply in this process (a split file's ranges one after another), profiled by step; N: start N "
            "Celery worker processes (configured broker) and time the apply's tasks on them.",
        )

    def handle(self, *args, rows, members, sample, seed, chunk_rows, range_rows, workers, **options):
        load_at_start = _load_average()
        if chunk_rows:
            settings.IMPORT_CHUNK_ROWS = chunk_rows
        if range_rows:
            settings.IMPORT_RANGE_ROWS = range_rows
        self.workers = workers
        self._ensure_tiers()
        self._ensure_members(members)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "points.csv"
            self._generate(path, rows, members, random.Random(seed))
            size_mb = path.stat().st_size / 1024 / 1024
            self.stdout.write(f"Generated {rows:,} rows over {members:,} members ({size_mb:.1f} MB).")
            ours = self._ours(path, rows)
            ours_rss = peak_rss_mb()
            floor = self._copy_floor(path, rows)
            ledger_floor = self._ledger_floor(members, rows)
            lean_floor = self._ledger_floor(members, rows, required_only=True)
            # The file's rows are credits: each opens its batch (points expire by batch), written by this floor too.
            batches_floor = self._ledger_floor(members, rows, required_only=True, with_batches=True)
            sample_rate = self._import_export(path, min(sample, rows))
        figures = {
            "rows": rows,
            "members": members,
            "database": connection.vendor,
            "check_s": ours["check_s"],
            "apply_s": ours["apply_s"],
            "total_s": ours["total_s"],
            "rows_per_s": round(rows / ours["total_s"]),
            "copy_floor_rows_per_s": round(rows / floor),
            # The file's entries ready-made, straight into a copy of the ledger: the most any import can reach on this
            # machine with the ledger's indexes and guards (see loyalty/bench_floor.py).
            "ledger_floor_rows_per_s": round(rows / ledger_floor),
            # The same into a copy keeping only the keys, links, index and foreign keys the ledger's spec requires.
            "ledger_floor_required_guards_rows_per_s": round(rows / lean_floor),
            "import_export_rows_per_s": round(sample_rate),
            "import_export_sample_rows": min(sample, rows),
            "import_export_passes": "dry run + import, as its admin does (ours: check + apply)",
            "vs_import_export": round(rows / ours["total_s"] / sample_rate, 1),
            # The goals, as ratios measured in this run: end to end against the ledger floor with the required guards
            # (at least 0.5), against django-import-export (at least 150x), peak memory (under 300 MB).
            "vs_floor": round(lean_floor / ours["total_s"], 3),
            "apply_vs_floor": round(lean_floor / ours["apply_s"], 3),
            "goal_vs_floor": 0.5,
            # The same entries and the batch each opens, with the required guards of both tables (bench_floor.py).
            "ledger_floor_with_batches_required_guards_rows_per_s": round(rows / batches_floor),
            "vs_floor_with_batches": round(batches_floor / ours["total_s"], 3),
            "goal_vs_import_export": 150,
            "goal_peak_memory_mb": 300,
            "fraction_of_copy_floor": round(floor / ours["total_s"], 3),
            "peak_rss_mb": ours_rss,
            "profile_check_s": ours["profile_check"],
            "profile_apply_s": ours["profile_apply"],
            "peak_rss_mb_whole_run": peak_rss_mb(),
            "applied": ours["applied"],
            "chunk_rows": chunk_rows_setting(),
            # Member ranges the apply was split into (0: chunks in one task; see IMPORT_RANGE_ROWS), and the worker
            # processes that took them (0: this process, one range after another).
            "ranges": ours["ranges"],
            "range_rows": range_rows_setting(),
            "workers": workers,
            "load_average_at_start": load_at_start,
            "load_average_at_end": _load_average(),
        }
        self.stdout.write(
            f"Ours (check + apply, balances and tiers): {figures['rows_per_s']:,} rows/s "
            f"({ours['check_s']:.2f} s check + {ours['apply_s']:.2f} s apply)."
        )
        self.stdout.write(
            f"COPY floor (the same file into a bare table): {figures['copy_floor_rows_per_s']:,} rows/s; "
            f"ours is {figures['fraction_of_copy_floor']:.1%} of it."
        )
        self.stdout.write(
            f"Ledger floor (the same number of ready-made entries into a copy of the ledger, no rules): "
            f"{figures['ledger_floor_rows_per_s']:,} rows/s; "
            f"{figures['ledger_floor_required_guards_rows_per_s']:,} rows/s with only the required guards; "
            f"ours is {figures['vs_floor']} of it (goal 0.5)."
        )
        self.stdout.write(
            f"django-import-export (row by row, dry run + import, "
            f"a {figures['import_export_sample_rows']:,}-row SAMPLE): "
            f"{figures['import_export_rows_per_s']:,} rows/s; ours is {figures['vs_import_export']}x faster."
        )
        self.stdout.write(f"Peak memory of our import: {ours_rss} MB.")
        self.stdout.write(f"Check by step (s): {ours['profile_check']}")
        self.stdout.write(f"Apply by step (s): {ours['profile_apply']}")
        self.stdout.write(json.dumps(figures))

    def _ensure_tiers(self):
        if not Tier.objects.exists():
            for name, threshold in (("Bronze", 0), ("Silver", 500), ("Gold", 2000)):
                Tier.objects.create(name=name, threshold=threshold)

    def _ensure_members(self, count: int) -> None:
        """Members bench0..bench<count-1>@bench.example, made with one statement (they start with no points)."""
        have = sql.one("SELECT COUNT(*) FROM loyalty_member WHERE email LIKE 'bench%%@bench.example'")
        if have >= count:
            return
        now = sql.adapt_datetime(timezone.now())
        series = (
            "SELECT g AS n FROM generate_series(0, %s) g"
            if sql.is_postgres()
            else "WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < %s) SELECT n FROM s"
        )
        first_tier = tier_for_sql("0", tier_table())  # the tier 0 lifetime points give, as for every new member
        with transaction.atomic():
            sql.execute(
                f"""INSERT INTO loyalty_member (email, customer_id, first_name, last_name, signed_up_at,
                        available_points, pending_points, lifetime_points, tier_id, created_at)
                    SELECT 'bench' || n || '@bench.example', NULL, 'Bench', 'Member', %s, 0, 0, 0, {first_tier}, %s
                    FROM ({series}) x
                    WHERE NOT EXISTS (
                        SELECT 1 FROM loyalty_member m WHERE m.email = 'bench' || n || '@bench.example')""",
                [now, now, count - 1],
            )

    def _generate(self, path: Path, rows: int, members: int, rng) -> None:
        run = uuid.uuid4().hex[:8]
        randrange = rng.randrange
        with path.open("w", newline="", encoding="utf-8") as out:
            out.write("email,points,reason\n")
            batch = []
            for _i in range(rows):
                batch.append(f"bench{randrange(members)}@bench.example,{randrange(1, 60)},bench {run}\n")
                if len(batch) == 10_000:
                    out.write("".join(batch))
                    batch.clear()
            out.write("".join(batch))

    def _ours(self, path: Path, rows: int) -> dict:
        started = time.perf_counter()
        with step_profile() as check_steps:
            with path.open("rb") as handle:
                job = import_job_create(kind="points", upload=File(handle, name=path.name), reason="bench_import")
            job = import_job_check(job_id=job.pk)
        check_s = time.perf_counter() - started
        if self.workers:
            # Timed from the queueing of the apply: the workers' start is not the import's time.
            job, apply_s = self._apply_on_workers(job)
            apply_steps = {}
        else:
            began = time.perf_counter()
            with step_profile() as apply_steps:
                job = import_job_apply(job_id=job.pk)
            apply_s = time.perf_counter() - began
        if job.status != ImportStatus.APPLIED or job.applied != rows:
            self.stderr.write(f"Import #{job.pk} ended {job.status} with {job.applied} of {rows} rows applied.")
        return {
            "check_s": round(check_s, 3),
            "apply_s": round(apply_s, 3),
            "total_s": round(check_s + apply_s, 3),
            "applied": job.applied,
            "ranges": job.ranges.count(),
            # Seconds by step (loyalty/profiling.py): the check's parse and check, the apply's re-check, and the bulk
            # path's stage, resolve, lock, entries, tiers, balances and each chunk's commit (checks).
            "profile_check": rounded(check_steps, check_s),
            "profile_apply": rounded(apply_steps, apply_s) if apply_steps else None,
        }

    def _apply_on_workers(self, job):
        """Start the worker processes on a queue of the bench's own, queue the apply, wait until the job ends.
        Returns the job and the seconds from the queueing to its end (the workers' start is not timed)."""
        from config.celery import app
        from imports.tasks.import_job import apply_import_job

        from .bench_webhooks import drop_queue, start_worker, stop

        queue = f"bench-import-{uuid.uuid4().hex[:8]}"
        env = dict(os.environ)
        env.update(
            CELERY_TASK_DEFAULT_QUEUE=queue,
            CELERY_TASK_ALWAYS_EAGER="false",
            IMPORT_RANGE_ROWS=str(range_rows_setting()),
            IMPORT_CHUNK_ROWS=str(chunk_rows_setting()),
            MEDIA_ROOT=str(settings.MEDIA_ROOT),
            PYTHONUNBUFFERED="1",
        )
        log_dir = Path(settings.VAR_DIR) / "bench_import"
        log_dir.mkdir(parents=True, exist_ok=True)
        app.conf.task_always_eager, app.conf.task_default_queue = False, queue
        procs = [start_worker(env, 1, log_dir / f"worker-{queue}-{n}.log") for n in range(self.workers)]
        try:
            deadline = time.monotonic() + 120
            while len(app.control.ping(timeout=1)) < self.workers:
                if time.monotonic() > deadline or any(proc.poll() is not None for proc in procs):
                    raise CommandError(f"the workers did not start; see {log_dir}")
            began = time.perf_counter()
            apply_import_job.delay(job.pk)
            while True:
                job.refresh_from_db()
                if job.status not in (ImportStatus.CHECKED, ImportStatus.APPLYING):
                    return job, time.perf_counter() - began
                if any(proc.poll() is not None for proc in procs):
                    raise CommandError(f"a worker exited early; see {log_dir}")
                time.sleep(0.1)
        finally:
            for proc in procs:
                stop(proc)
            drop_queue(queue)

    def _copy_floor(self, path: Path, rows: int) -> float:
        """The same file into a bare table: COPY on PostgreSQL; on SQLite, executemany of the parsed rows."""
        sql.execute("DROP TABLE IF EXISTS bench_copy_floor")
        sql.execute("CREATE TEMP TABLE bench_copy_floor (email text, points bigint, reason text)")
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cur, path.open("rb") as handle:
            if sql.is_postgres():
                with cur.cursor.copy("COPY bench_copy_floor FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                    while block := handle.read(1 << 20):
                        copy.write(block)
            else:
                reader = csv.reader(line.decode() for line in handle)
                next(reader)
                cur.executemany("INSERT INTO bench_copy_floor VALUES (%s, %s, %s)", reader)
        elapsed = time.perf_counter() - started
        sql.execute("DROP TABLE bench_copy_floor")
        return elapsed

    def _ledger_floor(self, members: int, rows: int, required_only: bool = False, with_batches: bool = False) -> float:
        member_ids = list(
            Member.objects.filter(email__endswith="@bench.example", email__startswith="bench")
            .order_by("pk")
            .values_list("pk", flat=True)[:members]
        )
        return ledger_write_floor_s(member_ids, rows, required_only=required_only, with_batches=with_batches)

    def _import_export(self, path: Path, sample: int) -> float:
        """django-import-export's documented import, row by row, on the file's first rows: as its admin does it, a dry
        run (the preview it shows, rolled back) and then the import itself, the same two passes as our check and
        apply. The rate is the sample's rows over the time of both."""
        import tablib

        from imports.resources import PointsAdjustmentResource

        run = uuid.uuid4().hex[:8]
        dataset = tablib.Dataset(headers=["email", "points", "reason", "reference"])
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            next(reader)
            for i, (email, points, reason) in enumerate(reader):
                if i >= sample:
                    break
                dataset.append([email, points, reason, f"{run}:{i}"])
        started = time.perf_counter()
        for dry_run in (True, False):
            result = PointsAdjustmentResource().import_data(dataset, dry_run=dry_run, raise_errors=True)
            if result.has_errors():
                self.stderr.write("django-import-export reported errors in its sample.")
        elapsed = time.perf_counter() - started
        return sample / elapsed
