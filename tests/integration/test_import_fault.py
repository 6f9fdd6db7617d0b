"""A 100,000-row import survives its worker being SIGKILLed mid-apply: no row lost, none applied twice.

Real parts: PostgreSQL, Redis as the broker, `celery worker` processes. After the kill a new worker starts and the
admin's "Resume" sends the apply task again; Redis may also redeliver the killed task's message (acks_late, and a
10-second visibility timeout here). Whichever delivery runs second finds the job applied; the job's committed chunks
and the rows' idempotency keys make any repeat a no-op.
"""

import random
from collections import Counter

import pytest
from django.core.files.base import ContentFile

from imports.models import ImportJob, ImportStatus
from imports.services.jobs import import_job_create, import_job_resume
from imports.tasks.import_job import apply_import_job, check_import_job
from loyalty.models import EntrySource, LedgerEntry, Member
from loyalty.selectors import ledger_differences
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

ROWS = 100_000
MEMBERS = 2_000


def _members(tiers):
    bronze = tiers[0]
    Member.objects.bulk_create(
        [Member(email=f"fault{i}@shop.example", tier=bronze) for i in range(MEMBERS)], batch_size=2_000
    )


def _points_file():
    rng = random.Random(42)
    expected = Counter()
    lines = ["email,points,reason"]
    for _row in range(ROWS):
        email, points = f"fault{rng.randrange(MEMBERS)}@shop.example", rng.randrange(1, 20)
        expected[email] += points
        lines.append(f"{email},{points},fault test")
    return "\n".join(lines) + "\n", expected


def _job():
    return ImportJob.objects.get()


def test_apply_survives_a_killed_worker(celery_worker_process, tiers):
    worker = celery_worker_process
    worker.stop()
    worker.env.update(DJANGO_SETTINGS_MODULE="tests.imports.worker_settings", CELERY_VISIBILITY_TIMEOUT="10")
    worker.start()
    _members(tiers)
    text, expected = _points_file()
    job = import_job_create(kind="points", upload=ContentFile(text.encode(), name="fault.csv"), reason="fault test")

    check_import_job.delay(job.pk)
    wait_for(lambda: _job().status == ImportStatus.CHECKED, timeout=120, what="the worker to check the file")
    assert _job().to_apply == ROWS

    apply_import_job.delay(job.pk)
    wait_for(lambda: 0 < _job().progress < ROWS, timeout=120, interval=0.05, what="the apply to be under way")
    worker.kill()
    stopped = _job()
    assert stopped.status == ImportStatus.APPLYING
    assert 0 < stopped.progress < ROWS, "the worker was killed mid-apply"
    assert LedgerEntry.objects.filter(source_ref=job.pk).count() == stopped.applied, "a killed chunk left nothing"

    worker.start()
    assert import_job_resume(job=stopped)
    apply_import_job.delay(job.pk)
    wait_for(lambda: _job().status == ImportStatus.APPLIED, timeout=300, what="the new worker to finish the apply")

    finished = _job()
    assert (finished.applied, finished.skipped, finished.failed, finished.progress) == (ROWS, 0, 0, ROWS)
    assert LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk).count() == ROWS
    balances = dict(Member.objects.filter(email__startswith="fault").values_list("email", "available_points"))
    assert balances == dict(expected)
    assert finished.points_credited == sum(expected.values())
    assert ledger_differences() == []
