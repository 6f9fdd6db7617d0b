"""Tasks of CSV upload jobs: each takes the job's id and calls the import service inside loyalty.background.job_task.

acks_late + reject_on_worker_lost: a worker that dies mid-apply leaves the message to be delivered again; the apply
resumes after its last committed chunk and the rows' idempotency keys make any repeat harmless. Any other error ends
the job as failed with the reason (job_task), and the stuck-job sweep queues a job whose task went silent again.

A big job split into member ranges (imports/services/jobs.py) runs one imports.import_range task per range, which any
worker takes, and the range that completes the job queues imports.import_close, its final step (a chord's callback
without a result backend: the ranges count themselves on the job's row). Each range is one transaction, retried on
its own after a database error (loyalty.background.range_task); a worker killed mid-range leaves its message to be
delivered again, and the range then posts nothing twice.
"""

from celery import shared_task
from django.utils.translation import gettext as _

from loyalty.background import job_task, range_task

from ..models import ImportJob, ImportRange
from ..services.jobs import (
    import_job_apply,
    import_job_check,
    import_job_close,
    import_job_fail,
    import_job_undo,
    import_range_apply,
    import_range_start,
)

OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "time_limit": 3600, "soft_time_limit": 3500}


@shared_task(name="imports.check_import_job", bind=True, **OPTIONS)
def check_import_job(self, job_id: int):
    """Check an uploaded file: the preview (counts and first problems) and the error file."""

    def fail(reason):
        import_job_fail(job_id=job_id, message=_("The check stopped: %(reason)s.") % {"reason": reason})

    job = job_task(self, model=ImportJob, pk=job_id, run=lambda: import_job_check(job_id=job_id), fail=fail)
    return job.status if job else None


def _apply_stopped(job_id: int, reason: str) -> None:
    import_job_fail(
        job_id=job_id, message=_("The apply stopped: %(reason)s. Resume applies the rest.") % {"reason": reason}
    )


@shared_task(name="imports.apply_import_job", bind=True, **OPTIONS)
def apply_import_job(self, job_id: int):
    """Apply a checked file in chunks, writing progress after each; a big one is split into member ranges, queued
    as tasks of their own."""
    job = job_task(
        self,
        model=ImportJob,
        pk=job_id,
        run=lambda: import_job_apply(job_id=job_id, spread=True),
        fail=lambda reason: _apply_stopped(job_id, reason),
    )
    return job.status if job else None


@shared_task(name="imports.import_range", bind=True, **OPTIONS)
def import_range_task(self, range_id: int):
    """Apply one member range of a big job; the range that completes the job queues its final step."""
    job_id = ImportRange.objects.filter(pk=range_id).values_list("job_id", flat=True).first()
    if job_id is None:
        return None  # the job is gone
    if not import_range_start(range_id=range_id):
        import_job_fail(
            job_id=job_id,
            message=_(
                "The apply stopped: a range of members (task imports.import_range %(id)s) started %(n)s times without "
                "finishing (each time its worker stopped: out of memory, or killed). See the workers' logs; Resume "
                "tries again."
            )
            % {"id": range_id, "n": ImportRange.objects.get(pk=range_id).attempts - 1},
        )
        return "failed"
    return range_task(
        self,
        model=ImportJob,
        pk=job_id,
        apply=lambda: import_range_apply(range_id=range_id),
        fail=lambda reason: _apply_stopped(job_id, reason),
        close_task="imports.import_close",
    )


@shared_task(name="imports.import_close", bind=True, **OPTIONS)
def import_close_task(self, job_id: int):
    """A split job's final step: applied once every range is done (safe to deliver twice)."""
    return import_job_close(job_id=job_id).status


@shared_task(name="imports.undo_import_job", bind=True, **OPTIONS)
def undo_import_job(self, job_id: int, user_id: int | None = None, reason: str = ""):
    """Reverse every entry an applied import made (who asked and why are kept on the job)."""

    def fail(message):
        import_job_fail(
            job_id=job_id,
            message=_("The undo stopped: %(reason)s. Undo again reverses the rest.") % {"reason": message},
        )

    job = job_task(self, model=ImportJob, pk=job_id, run=lambda: import_job_undo(job_id=job_id), fail=fail)
    return job.status if job else None
