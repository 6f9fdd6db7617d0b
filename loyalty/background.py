"""Running a background job's task so that the job always ends: a heartbeat while it runs, a readable failure.

Every task of a long job (an import's check, apply and undo; a Reward past actions run and its undo; a group action
and its undo) runs inside `job_task()`:

* it counts the task's start on the job (`task_starts`) and writes `heartbeat_at` at once, then every
  settings.JOB_HEARTBEAT_SECONDS from a small thread for as long as the task runs, so a job whose worker died is
  seen as silent (imports/services/stuck_jobs.py queues it again, and its page offers Resume);
* a task that has started settings.JOB_MAX_STARTS times without finishing (each time its worker died: out of
  memory, killed) fails the job with that reason instead of taking down one worker after another;
* any error the service did not handle ends the job as failed with a readable reason, after Celery's retries of a
  passing database error (loyalty/retry.py), and is logged with its traceback; the task itself then ends normally
  (the job row holds the outcome). Nothing is half-applied by that: each service commits its work in keyed chunks,
  and Resume or the sweep carries on from the last one.
"""

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from .queueing import queue_task
from .retry import RETRY_DELAYS_S, retry_if_transient

log = logging.getLogger(__name__)


def is_silent(job, seconds: float | None = None) -> bool:
    """Whether no task has shown a sign of life on the job for `seconds` (default: two heartbeats): its worker died,
    or its task was never queued. Measured from the last heartbeat, else from when the job was created."""
    seconds = 2 * settings.JOB_HEARTBEAT_SECONDS if seconds is None else seconds
    last = job.heartbeat_at or job.created_at
    return last is None or (timezone.now() - last).total_seconds() >= seconds


def failure_reason(exc: BaseException) -> str:
    """A stop as a program manager reads it: what happened, in one line, without a traceback."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return _("it ran past the time limit of a background task (settings CELERY_TASK_TIME_LIMIT)")
    text = " ".join(str(exc).split())[:500]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def heartbeat(model, pk: int):
    """Mark the job's row alive now and every JOB_HEARTBEAT_SECONDS until the block ends."""
    model.objects.filter(pk=pk).update(heartbeat_at=timezone.now())
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(model, pk, stop), name=f"heartbeat-{model.__name__}-{pk}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join(timeout=30)


def _beat(model, pk: int, stop: threading.Event) -> None:
    try:
        while not stop.wait(settings.JOB_HEARTBEAT_SECONDS):
            try:
                model.objects.filter(pk=pk).update(heartbeat_at=timezone.now())
            except Exception as exc:  # a locked SQLite file or a dropped connection: the next beat tries again
                log.warning("heartbeat of %s %s missed: %s", model.__name__, pk, exc)
    finally:
        connection.close()  # this thread's own connection


def job_task(task, *, model, pk: int, run: Callable[[], object], fail: Callable[[str], None]):
    """Run one task of a job: count its start, beat while it runs, and end the job as failed on any error.

    `run()` calls the service; `fail(reason)` records the job as failed with a sentence a program manager reads.
    A passing database error raises Celery's Retry (the job stays as it is and the retry carries on).
    """
    with transaction.atomic():
        model.objects.filter(pk=pk).update(task_starts=F("task_starts") + 1)
        starts = model.objects.filter(pk=pk).values_list("task_starts", flat=True).first()
    if starts is None:
        return None  # the job is gone
    if starts > settings.JOB_MAX_STARTS:
        fail(
            _(
                "Its background task started %(n)s times without finishing (each time its worker stopped: out of "
                "memory, or killed). See the workers' logs; Resume tries again."
            )
            % {"n": starts - 1}
        )
        _finished(model, pk)
        return None
    with heartbeat(model, pk):
        try:
            result = run()
        except Exception as exc:
            _finished(model, pk)  # an orderly stop, not a dead worker
            retry_if_transient(task, exc)
            log.exception("%s %s stopped", model.__name__, pk)
            fail(failure_reason(exc))
            return None
    _finished(model, pk)
    return result


def _finished(model, pk: int) -> None:
    model.objects.filter(pk=pk).update(task_starts=0)


def range_task(task, *, model, pk: int, apply: Callable[[], str], fail: Callable[[str], None], close_task: str):
    """Run one member range of a job spread over workers (a Reward past actions run, a big group action).

    `apply()` posts the range in one transaction and answers "done", "last" (it completed the job) or "skipped";
    the range that completes the job queues `close_task` (the job's final step, with `pk`). A database error (a
    deadlock, a key met with another range's, a dropped connection) retries this range alone, later; anything else
    ends the job as failed through `fail(reason)`. Beats on the job's row while it runs.
    """
    with heartbeat(model, pk):
        try:
            outcome = apply()
        except Exception as exc:
            attempt = task.request.retries
            if isinstance(exc, DatabaseError) and attempt < len(RETRY_DELAYS_S):
                log.warning("%s %s: a range again in %ss: %s", model.__name__, pk, RETRY_DELAYS_S[attempt], exc)
                raise task.retry(exc=exc, countdown=RETRY_DELAYS_S[attempt], max_retries=len(RETRY_DELAYS_S)) from exc
            log.exception("%s %s: a range stopped", model.__name__, pk)
            fail(failure_reason(exc))
            return "failed"
    if outcome == "last":
        queue_task(close_task, pk)
    return outcome


def range_delivery_counted(range_model, range_id: int) -> bool:
    """Count a delivery of a job's member range (any model with `done` and `attempts`), committed at once so a
    worker killed mid-range leaves its mark. False past settings.JOB_MAX_STARTS deliveries: the job then fails."""
    range_model.objects.filter(pk=range_id, done=False).update(attempts=F("attempts") + 1)
    attempts = range_model.objects.filter(pk=range_id).values_list("attempts", flat=True).first() or 0
    return attempts <= settings.JOB_MAX_STARTS
