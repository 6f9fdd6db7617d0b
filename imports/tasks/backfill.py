"""Tasks of Reward past actions runs: each takes the run's id and calls the service (safe to redeliver: keyed)."""

from celery import shared_task

from loyalty.retry import retry_if_transient

from ..services.backfill import backfill_run_apply, backfill_undo

JOB = {"acks_late": True, "reject_on_worker_lost": True, "time_limit": 3600, "soft_time_limit": 3500}


@shared_task(name="imports.backfill_run", bind=True, **JOB)
def backfill_run_task(self, run_id: int):
    try:
        return backfill_run_apply(run_id=run_id).points_credited
    except Exception as exc:
        retry_if_transient(self, exc)  # a failed run is taken up again from where it stopped
        raise


@shared_task(name="imports.backfill_undo", **JOB)
def backfill_undo_task(run_id: int):
    return backfill_undo(run_id=run_id).undo_reversed
