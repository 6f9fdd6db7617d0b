"""The stuck-job sweep: a job in flight whose task has gone silent is queued again, so every job ends.

A job is "in flight" while a task should be working on it (an import uploaded, checking, applying or undoing; a
Reward past actions run or a group action queued, running or undoing). Its task writes a heartbeat every
settings.JOB_HEARTBEAT_SECONDS (loyalty/background.py). When nothing has written one for settings.JOB_SILENT_SECONDS
(the worker died and its message is waiting for Redis's visibility timeout, or the web process died between the
status commit and the queueing), the sweep queues the task the status needs. Every task starts by reading the
job's status and every write is keyed, so a task that was only slow, not dead, meets a harmless second delivery; the
heartbeat is moved forward with the queueing, so one silent job is queued at most once per JOB_SILENT_SECONDS.
A task that keeps dying ends the job as failed after JOB_MAX_STARTS starts (loyalty/background.py).

A beat job runs the sweep every 5 minutes (setup_periodic_tasks).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from loyalty.models import GroupAction, JobStatus

from ..models import BackfillRun, BackfillStatus, ImportJob, ImportStatus
from .jobs import import_ranges_restart

log = logging.getLogger(__name__)


def _import_task(status: str) -> str:
    return {
        ImportStatus.UPLOADED: "check_import_job",
        ImportStatus.CHECKING: "check_import_job",
        ImportStatus.APPLYING: "apply_import_job",
        ImportStatus.UNDOING: "undo_import_job",
    }[status]


def _backfill_task(status: str) -> str:
    return "backfill_undo_task" if status == BackfillStatus.UNDOING else "backfill_run_task"


def _group_task(status: str) -> str:
    return "group_action_undo_task" if status == JobStatus.UNDOING else "group_action_run_task"


def _send(kind: str, task_name: str, pk: int) -> None:
    from loyalty.tasks import groups as group_tasks  # tasks import services: imported late to avoid a cycle

    from ..tasks import backfill as backfill_tasks
    from ..tasks import import_job as import_tasks

    module = {"import": import_tasks, "backfill": backfill_tasks, "group": group_tasks}[kind]
    getattr(module, task_name).delay(pk)


# kind -> (model, statuses in flight, task for a status)
JOBS = {
    "import": (
        ImportJob,
        [s.value for s in (ImportStatus.UPLOADED, ImportStatus.CHECKING, ImportStatus.APPLYING, ImportStatus.UNDOING)],
        _import_task,
    ),
    "backfill": (BackfillRun, [BackfillStatus.QUEUED, BackfillStatus.RUNNING, BackfillStatus.UNDOING], _backfill_task),
    "group": (GroupAction, [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.UNDOING], _group_task),
}


def job_requeue(*, kind: str, pk: int, silent_seconds: float | None = None) -> bool:
    """Queue again the task a silent job in flight needs (the job's status and heartbeat move with the queueing,
    in one transaction). False when the job is not in flight, or a task has shown a sign of life since the cutoff.

    kind: "import", "backfill" or "group". silent_seconds: None takes settings.JOB_SILENT_SECONDS; 0 queues a
    job in flight whatever its heartbeat (the pages' Resume).
    """
    model, statuses, task_for = JOBS[kind]
    seconds = settings.JOB_SILENT_SECONDS if silent_seconds is None else silent_seconds
    cutoff = timezone.now() - timedelta(seconds=seconds)
    with transaction.atomic():
        job = model.objects.select_for_update().filter(pk=pk, status__in=statuses).first()
        if job is None or (seconds and (job.heartbeat_at or job.created_at) > cutoff):
            return False
        model.objects.filter(pk=pk).update(heartbeat_at=timezone.now())
        task_name = task_for(job.status)
        transaction.on_commit(lambda: _send(kind, task_name, pk))
    log.warning("%s %s (%s) was silent: queued %s again", model.__name__, pk, job.status, task_name)
    return True


def silent_jobs_requeue(*, silent_seconds: float | None = None) -> dict[str, list[int]]:
    """The sweep: queue again every job in flight that has been silent for silent_seconds (default
    settings.JOB_SILENT_SECONDS). Returns the ids queued, by kind."""
    seconds = settings.JOB_SILENT_SECONDS if silent_seconds is None else silent_seconds
    cutoff = timezone.now() - timedelta(seconds=seconds)
    silent = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    if not seconds:
        silent = Q()
    queued = {}
    for kind, (model, statuses, _task_for) in JOBS.items():
        ids = list(model.objects.filter(silent, status__in=statuses).order_by("pk").values_list("pk", flat=True))
        queued[kind] = [pk for pk in ids if job_requeue(kind=kind, pk=pk, silent_seconds=seconds)]
    return queued


def job_resume(*, kind: str, pk: int) -> str | None:
    """The job pages' Resume: queue again what a stopped job needs. Returns the step queued ("check", "apply",
    "run" or "undo") or None when there is nothing to resume.

    A job in flight gets its task again (the page offers Resume once it has been silent for two heartbeats). A
    failed job carries on where it stopped: its undo when an undo was asked for (never its forward run again),
    else its apply (an import checked before) or its run. The task's start count begins again: a person decided.
    """
    model, statuses, task_for = JOBS[kind]
    with transaction.atomic():
        job = model.objects.select_for_update().filter(pk=pk).first()
        if job is None:
            return None
        failed = job.status == (ImportStatus.FAILED if kind == "import" else JobStatus.FAILED)
        if failed:
            status = _resume_status(kind, job)
            if status is None:
                return None
            fields = {"status": status} if kind == "group" else {"status": status, "error": ""}
            model.objects.filter(pk=pk).update(**fields)
            job.status = status
        elif job.status not in statuses:
            return None
        model.objects.filter(pk=pk).update(task_starts=0, heartbeat_at=timezone.now())
        if kind == "import":
            import_ranges_restart(job_id=pk)
        task_name = task_for(job.status)
        transaction.on_commit(lambda: _send(kind, task_name, pk))
    return STEP[task_name]


STEP = {
    "check_import_job": "check",
    "apply_import_job": "apply",
    "undo_import_job": "undo",
    "backfill_run_task": "run",
    "backfill_undo_task": "undo",
    "group_action_run_task": "run",
    "group_action_undo_task": "undo",
}


def _resume_status(kind: str, job) -> str | None:
    if job.undo_started_at:
        return ImportStatus.UNDOING if kind == "import" else JobStatus.UNDOING
    if kind == "import":
        return ImportStatus.APPLYING if job.checked_at else ImportStatus.UPLOADED
    return JobStatus.QUEUED
