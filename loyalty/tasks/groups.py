"""Background jobs of customer groups: group actions and their undo, and the RFM refresh (scheduled and on demand)."""

import logging

from celery import shared_task
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.translation import gettext as _

from ..background import job_task, range_task
from ..models import GroupAction, GroupActionRange, JobStatus
from ..services.groups import (
    group_action_close,
    group_action_range_apply,
    group_action_range_start,
    group_action_run,
    group_action_undo,
)
from ..services.rfm import rfm_refresh

log = logging.getLogger(__name__)

# Safe to retry: every posting of a group action is keyed, and an undo only runs from the "undoing" status.
JOB = {"acks_late": True, "reject_on_worker_lost": True, "time_limit": 3600, "soft_time_limit": 3500}


IN_FLIGHT = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.UNDOING)


def _fail(action_id: int, message: str) -> None:
    """End the action as failed with the reason, kept with its problems (its page shows them)."""
    # FAILED too: the action's service marks its own failure with the bare error; this says what to do next.
    GroupAction.objects.filter(pk=action_id, status__in=(*IN_FLIGHT, JobStatus.FAILED)).update(
        status=JobStatus.FAILED, problems=Concat(F("problems"), Value(f"{message}\n")), finished_at=timezone.now()
    )


@shared_task(name="loyalty.group_action_run", bind=True, **JOB)
def group_action_run_task(self, action_id: int):
    def fail(reason):
        _fail(action_id, _("Stopped: %(reason)s. Resume posts the rest.") % {"reason": reason})

    action = job_task(
        self,
        model=GroupAction,
        pk=action_id,
        run=lambda: group_action_run(action_id=action_id, spread=True),
        fail=fail,
    )
    return action.posted if action else None


@shared_task(name="loyalty.group_action_range", bind=True, **JOB)
def group_action_range_task(self, range_id: int):
    """Post one range of a big group action; the range that completes the action queues its final step. A database
    error retries the range on its own; a worker killed mid-range leaves its message to be delivered again."""
    action_id = GroupActionRange.objects.filter(pk=range_id).values_list("action_id", flat=True).first()
    if action_id is None:
        return None
    if not group_action_range_start(range_id=range_id):
        _fail(action_id, _("Stopped: a range of members started too many times without finishing. Resume retries."))
        return "failed"
    return range_task(
        self,
        model=GroupAction,
        pk=action_id,
        apply=lambda: group_action_range_apply(range_id=range_id),
        fail=lambda reason: _fail(action_id, _("Stopped: %(reason)s. Resume posts the rest.") % {"reason": reason}),
        close_task="loyalty.group_action_close",
    )


@shared_task(name="loyalty.group_action_close", bind=True, **JOB)
def group_action_close_task(self, action_id: int):
    return group_action_close(action_id=action_id).status


@shared_task(name="loyalty.group_action_undo", bind=True, **JOB)
def group_action_undo_task(self, action_id: int):
    def fail(reason):
        _fail(action_id, _("The undo stopped: %(reason)s. Undo again reverses the rest.") % {"reason": reason})

    action = job_task(
        self, model=GroupAction, pk=action_id, run=lambda: group_action_undo(action_id=action_id), fail=fail
    )
    return action.status if action else None


@shared_task(name="loyalty.rfm_refresh", **JOB)
def rfm_refresh_task():
    """Rescore every member with orders (nightly, and from the admin's "Refresh RFM scores" button)."""
    result = rfm_refresh()
    log.info("RFM scores refreshed for %s members: %s", result.members_scored, result.by_segment)
    return result.members_scored
