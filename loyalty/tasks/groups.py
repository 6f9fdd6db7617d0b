"""Background jobs of customer groups: group actions and their undo, and the RFM refresh (scheduled and on demand)."""

import logging

from celery import shared_task

from ..retry import retry_if_transient
from ..services.groups import group_action_run, group_action_undo
from ..services.rfm import rfm_refresh

log = logging.getLogger(__name__)

# Safe to retry: every posting of a group action is keyed, and an undo only runs from the "undoing" status.
JOB = {"acks_late": True, "reject_on_worker_lost": True, "time_limit": 3600, "soft_time_limit": 3500}


@shared_task(name="loyalty.group_action_run", bind=True, **JOB)
def group_action_run_task(self, action_id: int):
    try:
        action = group_action_run(action_id=action_id)
    except Exception as exc:
        retry_if_transient(self, exc)  # a failed action is taken up again; its postings are keyed
        raise
    return action.posted


@shared_task(name="loyalty.group_action_undo", **JOB)
def group_action_undo_task(action_id: int):
    action = group_action_undo(action_id=action_id)
    return action.status


@shared_task(name="loyalty.rfm_refresh", **JOB)
def rfm_refresh_task():
    """Rescore every member with orders (nightly, and from the admin's "Refresh RFM scores" button)."""
    result = rfm_refresh()
    log.info("RFM scores refreshed for %s members: %s", result.members_scored, result.by_segment)
    return result.members_scored
