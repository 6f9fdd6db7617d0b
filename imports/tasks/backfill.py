"""Tasks of Reward past actions runs: each takes the run's id and calls the service (safe to redeliver: keyed).

Each runs inside loyalty.background.job_task: a heartbeat while it works, and any error ends the run as failed with
the reason (Resume on the run's page, or the stuck-job sweep, takes it up again).
"""

from celery import shared_task
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty.background import job_task

from ..models import BackfillRun, BackfillStatus
from ..services.backfill import backfill_run_apply, backfill_undo

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

    run = job_task(self, model=BackfillRun, pk=run_id, run=lambda: backfill_run_apply(run_id=run_id), fail=fail)
    return run.points_credited if run else None


@shared_task(name="imports.backfill_undo", bind=True, **JOB)
def backfill_undo_task(self, run_id: int):
    def fail(reason):
        _fail(run_id, _("The undo stopped: %(reason)s. Undo again reverses the rest.") % {"reason": reason})

    run = job_task(self, model=BackfillRun, pk=run_id, run=lambda: backfill_undo(run_id=run_id), fail=fail)
    return run.undo_reversed if run else None
