"""Tasks of CSV upload jobs: each takes the job's id and calls the import service.

acks_late + reject_on_worker_lost: a worker that dies mid-apply leaves the message to be delivered again; the apply
resumes after its last committed chunk and the rows' idempotency keys make any repeat harmless.
"""

import logging

from celery import shared_task

from loyalty.retry import retry_if_transient

from ..services.jobs import import_job_apply, import_job_check, import_job_fail, import_job_undo

log = logging.getLogger(__name__)

OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "time_limit": 3600, "soft_time_limit": 3500}


@shared_task(name="imports.check_import_job", **OPTIONS)
def check_import_job(job_id: int):
    """Check an uploaded file: the preview (counts and first problems) and the error file."""
    job = import_job_check(job_id=job_id)
    return job.status


@shared_task(name="imports.apply_import_job", bind=True, **OPTIONS)
def apply_import_job(self, job_id: int):
    """Apply a checked file in chunks, writing progress after each."""
    try:
        job = import_job_apply(job_id=job_id)
    except Exception as exc:
        # A deadlock or a dropped connection: the job stays "applying" and the retry continues after the last chunk.
        retry_if_transient(self, exc)
        log.exception("import job %s stopped", job_id)
        import_job_fail(job_id=job_id, message=f"Stopped by an unexpected error: {exc}. Resume applies the rest.")
        raise
    return job.status


@shared_task(name="imports.undo_import_job", **OPTIONS)
def undo_import_job(job_id: int, user_id: int | None = None, reason: str = ""):
    """Reverse every entry an applied import made."""
    actor = None
    if user_id:
        from accounts.models import User

        actor = User.objects.filter(pk=user_id).first()
    job = import_job_undo(job_id=job_id, actor=actor, reason=reason)
    return job.status
