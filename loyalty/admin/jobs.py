"""Background jobs of the admin's "select all N" actions: the list's filter goes to the job, not N ids in a form.

The job rebuilds the very queryset the list showed (same filters, same search) as the staff member who asked, then
posts in chunks through the ledger service. Each member's posting is keyed by the form's one-time token, so a job
that runs twice (a worker lost mid-way, a resubmitted form) posts nothing twice.
"""

import logging

from celery import shared_task
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpRequest, QueryDict

from ..errors import LoyaltyError
from ..models import Coupon, EntrySource, Member, Reward
from ..services import Posting, entries_post_bulk, reward_give

log = logging.getLogger(__name__)
CHUNK = 5_000


def queue(task, **kwargs) -> None:
    transaction.on_commit(lambda: task.delay(**kwargs))


def matching_members(user, query: str):
    """The members the list showed for this querystring, as this user saw them."""
    request = HttpRequest()
    request.method = "GET"
    request.GET = QueryDict(query, mutable=True)
    request.GET.pop("p", None)
    request.user = user
    model_admin = admin.site._registry[Member]
    changelist = model_admin.get_changelist_instance(request)
    return changelist.get_queryset(request)


def member_id_chunks(queryset):
    """Ids in primary-key order, a chunk at a time (keyset pagination: no OFFSET over a million rows)."""
    ids = queryset.order_by("pk").values_list("pk", flat=True)
    last = 0
    while chunk := list(ids.filter(pk__gt=last)[:CHUNK]):
        yield chunk
        last = chunk[-1]


@shared_task(name="loyalty.admin_adjust_points_matching", acks_late=True, reject_on_worker_lost=True, time_limit=3600)
def adjust_points_matching(*, user_id, query, token, points, apply_type, reason):
    user = get_user_model().objects.get(pk=user_id)
    totals = {"posted": 0, "already": 0, "refused": 0, "points": 0}
    for chunk in member_id_chunks(matching_members(user, query)):
        postings = [
            Posting(member_id, points, reason, apply_type=apply_type, idempotency_key=f"admin:{token}:{member_id}")
            for member_id in chunk
        ]
        result = entries_post_bulk(postings=postings, actor=user, source=EntrySource.ADMIN)
        totals["posted"] += result.posted
        totals["already"] += result.already_applied
        totals["refused"] += len(result.refused)
        totals["points"] += result.points_credited - result.points_debited
    log.info("adjust points of matching members (token %s): %s", token, totals)
    return totals


@shared_task(name="loyalty.admin_give_reward_matching", acks_late=True, reject_on_worker_lost=True, time_limit=3600)
def give_reward_matching(*, user_id, query, token, reward_id, deduct, reason):
    user = get_user_model().objects.get(pk=user_id)
    reward = Reward.objects.get(pk=reward_id)
    totals = {"given": 0, "refused": 0}
    for chunk in member_id_chunks(matching_members(user, query)):
        done = set(
            Coupon.objects.filter(idempotency_key__in=[f"admin:{token}:{m}" for m in chunk]).values_list(
                "member_id", flat=True
            )
        )
        for member_id in chunk:
            if member_id in done:
                continue
            try:
                reward_give(
                    member=member_id,
                    reward=reward,
                    deduct_points=deduct,
                    actor=user,
                    reason=reason,
                    idempotency_key=f"admin:{token}:{member_id}",
                )
                totals["given"] += 1
            except LoyaltyError:
                totals["refused"] += 1
    log.info("give reward to matching members (token %s): %s", token, totals)
    return totals
