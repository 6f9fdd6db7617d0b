"""Background work of the tiers: moving every member after the tiers changed."""

from celery import shared_task

from loyalty.services import tiers_recompute_all

JOB = {"acks_late": True, "reject_on_worker_lost": True, "time_limit": 3600}


@shared_task(name="tiers.recompute", **JOB)
def tiers_recompute_task(reason: str = "Tiers changed"):
    """Put every member in the tier their lifetime points reach now (idempotent: a second run moves nobody)."""
    up, down = tiers_recompute_all(reason=reason)
    return {"up": up, "down": down}
