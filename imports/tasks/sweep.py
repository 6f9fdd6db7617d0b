"""The stuck-job sweep, run by beat every 5 minutes (see imports/services/stuck_jobs.py)."""

from celery import shared_task

from ..services.stuck_jobs import silent_jobs_requeue


@shared_task(name="imports.requeue_silent_jobs", acks_late=True, time_limit=300)
def requeue_silent_jobs():
    """Queue again the jobs in flight whose task has gone silent; returns their ids by kind."""
    return silent_jobs_requeue()
