"""A 100,000-row import survives its worker being SIGKILLed mid-apply, and its web process being SIGKILLed between
the "applying" commit and the queueing of the task: no row lost, none applied twice.

Real parts: PostgreSQL, Redis as the broker, `celery worker` processes, a web process (Django's test client in its
own process, through the admin's Apply button). After the worker's kill a new worker starts and the admin's "Resume"
sends the apply task again; Redis may also redeliver the killed task's message (acks_late, and a 10-second
visibility timeout here). Whichever delivery runs second finds the job applied; the job's committed chunks and the
rows' idempotency keys make any repeat a no-op. After the web process's kill nothing was queued: the job page offers
Resume, and the stuck-job sweep (as beat runs it) queues the apply.
"""

import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from django.core.files.base import ContentFile

from imports.models import ImportJob, ImportStatus
from imports.services.jobs import import_job_create, import_job_resume
from imports.tasks.import_job import apply_import_job, check_import_job
from imports.tasks.sweep import requeue_silent_jobs
from loyalty.models import EntrySource, LedgerEntry, Member
from loyalty.selectors import ledger_differences
from tests.factories import ManagerFactory
from tests.integration.conftest import ROOT, wait_for

pytestmark = pytest.mark.integration

ROWS = 100_000
MEMBERS = 2_000


def _members(tiers):
    bronze = tiers[0]
    Member.objects.bulk_create(
        [Member(email=f"fault{i}@shop.example", tier=bronze) for i in range(MEMBERS)], batch_size=2_000
    )


def _points_file(rows=ROWS):
    rng = random.Random(42)
    expected = Counter()
    lines = ["email,points,reason"]
    for _row in range(rows):
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


# The web process: the admin's Apply button through Django's test client, in a process of its own that dies
# (SIGKILL) at the moment it would hand the apply task to the broker, after the "applying" status has committed.
WEB_PROCESS = """
import os, signal, sys
import django
django.setup()
from celery.app.task import Task
from django.test import Client
from accounts.models import User

Task.apply_async = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
client = Client()
client.force_login(User.objects.get(username=sys.argv[2]))
client.post(f"/admin/imports/importjob/{sys.argv[1]}/apply/")
print("not killed")
"""


def test_apply_survives_the_web_process_killed_between_the_status_commit_and_the_queueing(
    celery_worker_process, tiers, client, settings
):
    rows = 10_000
    _members(tiers)
    text, expected = _points_file(rows)
    job = import_job_create(kind="points", upload=ContentFile(text.encode(), name="web.csv"), reason="web kill")
    check_import_job.delay(job.pk)
    wait_for(lambda: _job().status == ImportStatus.CHECKED, timeout=120, what="the worker to check the file")
    manager = ManagerFactory()

    web = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS, str(job.pk), manager.username],
        cwd=ROOT,
        env=celery_worker_process.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert web.returncode == -signal.SIGKILL, web.stdout + web.stderr
    time.sleep(2)  # a queued task would have started by now
    stuck = _job()
    assert (stuck.status, stuck.progress) == (ImportStatus.APPLYING, 0), "applying, and no task working on it"
    assert not LedgerEntry.objects.filter(source_ref=job.pk).exists()

    settings.JOB_HEARTBEAT_SECONDS = 1  # the page offers Resume once no task has beaten for two heartbeats
    client.force_login(manager)
    assert client.get(f"/admin/imports/importjob/{job.pk}/change/").context["can_resume"]

    settings.JOB_SILENT_SECONDS = 1  # the sweep, as beat runs it every 5 minutes, after the job went silent
    assert requeue_silent_jobs.apply().get() == {"import": [job.pk], "backfill": [], "group": []}
    wait_for(lambda: _job().status == ImportStatus.APPLIED, timeout=300, what="the worker to apply the resumed job")
    finished = _job()
    assert (finished.applied, finished.skipped, finished.failed) == (rows, 0, 0)
    assert LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk).count() == rows
    balances = Member.objects.filter(email__startswith="fault", available_points__gt=0)
    assert dict(balances.values_list("email", "available_points")) == dict(expected)
    assert ledger_differences() == []
