"""A big points import on a real worker: its member ranges are Celery tasks of their own (imports.import_range), the
range that completes the job queues its final step (imports.import_close), and a range whose worker is SIGKILLed
mid-transaction is delivered again and posts nothing twice.

Real parts: PostgreSQL, Redis as the broker, `celery worker` processes. 400 rows over 40 members, ranges of about 100
rows (IMPORT_RANGE_ROWS in the worker's environment): four ranges. The kill: the test holds a lock on a member of the
second range, so that range's task waits inside its transaction (after committing its delivery count); the worker is
killed there, the lock released, a new worker started, and the job's Resume (as its page and the stuck-job sweep do)
queues the ranges not done. Redis may also hand the killed message out again (acks_late, a 10-second visibility
timeout here): whichever delivery comes second finds the range done.
"""

import time
from collections import Counter

import pytest
from django.core.files.base import ContentFile
from django.db import transaction

from imports.models import ImportJob, ImportRange, ImportStatus
from imports.services.jobs import import_job_create
from imports.services.stuck_jobs import job_requeue
from imports.tasks.import_job import apply_import_job, check_import_job, import_range_task
from loyalty.models import EntrySource, LedgerEntry, Member
from loyalty.selectors import ledger_differences
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

MEMBERS = 40
ROWS = 400


@pytest.fixture
def members(tiers):
    Member.objects.bulk_create([Member(email=f"range{i}@shop.example", tier=tiers[0]) for i in range(MEMBERS)])
    return sorted(Member.objects.values_list("pk", flat=True))


@pytest.fixture
def worker(celery_worker_process):
    celery_worker_process.stop()
    celery_worker_process.env.update(IMPORT_RANGE_ROWS="100", CELERY_VISIBILITY_TIMEOUT="10")
    celery_worker_process.start()
    return celery_worker_process


def _file():
    """Ten rows per member, the members taking turns through the file; the points a member gets in all."""
    expected, lines = Counter(), ["email,points,reason"]
    for row in range(ROWS):
        email, points = f"range{row % MEMBERS}@shop.example", 1 + row % 7
        expected[email] += points
        lines.append(f"{email},{points},ranges")
    return "\n".join(lines) + "\n", expected


def _job() -> ImportJob:
    return ImportJob.objects.get()


def _checked_job(worker) -> tuple[ImportJob, Counter]:
    text, expected = _file()
    job = import_job_create(kind="points", upload=ContentFile(text.encode(), name="ranges.csv"), reason="ranges")
    check_import_job.delay(job.pk)
    wait_for(lambda: _job().status == ImportStatus.CHECKED, timeout=120, what="the worker to check the file")
    return job, expected


def _assert_every_row_once(job: ImportJob, expected: Counter) -> None:
    entries = LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk)
    assert entries.count() == entries.values("idempotency_key").distinct().count() == ROWS
    assert (job.applied, job.skipped, job.failed, job.progress) == (ROWS, 0, 0, ROWS)
    assert job.points_credited == sum(expected.values())
    balances = dict(Member.objects.filter(email__startswith="range").values_list("email", "available_points"))
    assert balances == dict(expected)
    assert ledger_differences() == []


def test_the_ranges_run_as_tasks_and_the_last_closes_the_job(worker, members):
    job, expected = _checked_job(worker)
    apply_import_job.delay(job.pk)
    wait_for(lambda: _job().status == ImportStatus.APPLIED, timeout=180, what="the worker to apply the job")
    job = _job()
    ranges = list(job.ranges.order_by("lo"))
    assert len(ranges) == ROWS // 100
    assert all(r.done and r.attempts == 1 and r.rows == 100 for r in ranges)
    assert sum(r.applied for r in ranges) == job.applied, "progress is the sum of the ranges"
    _assert_every_row_once(job, expected)

    # A range delivered again (a duplicate message, a sweep) finds itself done: nothing posted, nothing counted.
    import_range_task.delay(ranges[0].pk)
    time.sleep(3)
    assert LedgerEntry.objects.filter(source=EntrySource.IMPORT).count() == ROWS
    _assert_every_row_once(_job(), expected)


def test_a_range_killed_mid_transaction_is_delivered_again_and_posts_nothing_twice(worker, members):
    job, expected = _checked_job(worker)
    second = members[10]  # the first member of the second range (ten rows a member, a hundred rows a range)
    with transaction.atomic():
        Member.objects.select_for_update().get(pk=second)  # that range's task waits on it, inside its transaction
        apply_import_job.delay(job.pk)
        wait_for(
            lambda: ImportRange.objects.filter(job=job, lo=second, attempts=1).exists(),
            timeout=120,
            what="the second range to start",
        )
        time.sleep(1)
        assert ImportRange.objects.filter(job=job, done=True).count() == 1, "the first range is in"
        worker.kill()
    killed = ImportRange.objects.get(job=job, lo=second)
    assert not killed.done and killed.attempts == 1, "the killed delivery is counted; its transaction left nothing"
    assert not LedgerEntry.objects.filter(source=EntrySource.IMPORT, member_id__gte=second, member_id__lt=second + 10)
    assert _job().status == ImportStatus.APPLYING and _job().progress == 100

    worker.start()
    assert job_requeue(kind="import", pk=job.pk, silent_seconds=0)  # the job page's Resume
    wait_for(lambda: _job().status == ImportStatus.APPLIED, timeout=180, what="the new worker to finish the job")
    killed.refresh_from_db()
    assert killed.done
    _assert_every_row_once(_job(), expected)
