"""Tasks of CSV upload jobs: each takes the job's id and calls the import service inside loyalty.background.job_task.

acks_late + reject_on_worker_lost: a worker that dies mid-apply leaves the message to be delivered again; the apply
resumes after its last committed chunk and the rows' idempotency keys make any repeat harmless. Any other error ends
the job as failed with the reason (job_task), and the stuck-job sweep queues a job whose task went silent again.
"""

from celery import shared_task
from django.utils.translation import gettext as _

from loyalty.background import job_task

from ..models import ImportJob
from ..services.jobs import import_job_apply, import_job_check, import_job_fail, import_job_undo

OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "time_limit": 3600, "soft_time_limit": 3500}


@shared_task(name="imports.check_import_job", bind=True, **OPTIONS)
def check_import_job(self, job_id: int):
    """Check an uploaded file: the preview (counts and first problems) and the error file."""

    def fail(reason):
        import_job_fail(job_id=job_id, message=_("The check stopped: %(reason)s.") % {"reason": reason})

    job = job_task(self, model=ImportJob, pk=job_id, run=lambda: import_job_check(job_id=job_id), fail=fail)
    return job.status if job else None


@shared_task(name="imports.apply_import_job", bind=True, **OPTIONS)
def apply_import_job(self, job_id: int):
    """Apply a checked file in chunks, writing progress after each."""

    def fail(reason):
        import_job_fail(
            job_id=job_id, message=_("The apply stopped: %(reason)s. Resume applies the rest.") % {"reason": reason}
        )

    job = job_task(self, model=ImportJob, pk=job_id, run=lambda: import_job_apply(job_id=job_id), fail=fail)
    return job.status if job else None


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
