"""Tasks of Reward past actions runs: each takes the run's id and calls the service (safe to redeliver: keyed)."""

from celery import shared_task

from ..services.backfill import backfill_run_apply, backfill_undo

JOB = {"acks_late": True, "reject_on_worker_lost": True, "time_limit": 3600, "soft_time_limit": 3500}


@shared_task(name="imports.backfill_run", **JOB)
def backfill_run_task(run_id: int):
    return backfill_run_apply(run_id=run_id).points_credited


@shared_task(name="imports.backfill_undo", **JOB)
def backfill_undo_task(run_id: int):
    return backfill_undo(run_id=run_id).undo_reversed
