"""Tasks of Reward past actions runs: each calls the service (safe to redeliver: keyed).

imports.backfill_run starts (or resumes) a run: it splits it into member ranges and queues one imports.backfill_range
task per range not done, which any worker takes; the range that completes the run queues imports.backfill_close, its
final step (a chord's callback, without needing a result backend: the ranges count themselves on the run's row). Each
range is one transaction, retried on its own after a database error (a deadlock with another range, say); a worker
killed mid-range leaves its message to be delivered again (acks_late), and the range then posts nothing twice. Any
other error ends the run as failed with the reason (Resume on the run's page, or the stuck-job sweep, queues the ranges
not done again). The start and the undo run inside loyalty.background.job_task; a range beats on the run's row.
"""

import logging

from celery import shared_task
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty.background import job_task, range_task

from ..models import BackfillRange, BackfillRun, BackfillStatus
from ..services.backfill import (
    backfill_range_apply,
    backfill_range_start,
    backfill_run_apply,
    backfill_run_close,
    backfill_undo,
)

log = logging.getLogger(__name__)

JOB = {"acks_late": True, "reject_on_worker_lost": True, "time_limit": 3600, "soft_time_limit": 3500}
IN_FLIGHT = (BackfillStatus.QUEUED, BackfillStatus.RUNNING, BackfillStatus.UNDOING)


def _fail(run_id: int, message: str) -> None:
    # FAILED too: the run's service marks its own failure with the bare error; this says what to do next.
    BackfillRun.objects.filter(pk=run_id, status__in=(*IN_FLIGHT, BackfillStatus.FAILED)).update(
        status=BackfillStatus.FAILED, error=message[:2000], finished_at=timezone.now()
    )


@shared_task(name="imports.backfill_run", bind=True, **JOB)
def backfill_run_task(self, run_id: int):
    def fail(reason):
        _fail(run_id, _("The run stopped: %(reason)s. Resume credits the rest.") % {"reason": reason})

    run = job_task(
        self, model=BackfillRun, pk=run_id, run=lambda: backfill_run_apply(run_id=run_id, spread=True), fail=fail
    )
    return run.status if run else None


@shared_task(name="imports.backfill_range", bind=True, **JOB)
def backfill_range_task(self, range_id: int):
    """Apply one member range of a run; the range that completes the run queues its final step."""
    run_id = BackfillRange.objects.filter(pk=range_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return None  # the run is gone
    if not backfill_range_start(range_id=range_id):
        _fail(
            run_id,
            _(
                "The run stopped: a range of members (task imports.backfill_range %(id)s) started %(n)s times without "
                "finishing (each time its worker stopped: out of memory, or killed). See the workers' logs; Resume "
                "tries again."
            )
            % {"id": range_id, "n": BackfillRange.objects.get(pk=range_id).attempts - 1},
        )
        return "failed"
    return range_task(
        self,
        model=BackfillRun,
        pk=run_id,
        apply=lambda: backfill_range_apply(range_id=range_id),
        fail=lambda reason: _fail(
            run_id, _("The run stopped: %(reason)s. Resume credits the rest.") % {"reason": reason}
        ),
        close_task="imports.backfill_close",
    )


@shared_task(name="imports.backfill_close", bind=True, **JOB)
def backfill_close_task(self, run_id: int):
    """The run's final step: done once every range is (safe to deliver twice)."""
    return backfill_run_close(run_id=run_id).status


@shared_task(name="imports.backfill_undo", bind=True, **JOB)
def backfill_undo_task(self, run_id: int):
    def fail(reason):
        _fail(run_id, _("The undo stopped: %(reason)s. Undo again reverses the rest.") % {"reason": reason})

    run = job_task(self, model=BackfillRun, pk=run_id, run=lambda: backfill_undo(run_id=run_id), fail=fail)
    return run.undo_reversed if run else None
