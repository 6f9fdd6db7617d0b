"""Background jobs of the admin's "select all N" actions: the list's filter goes to the job, not N ids in a form.

The job rebuilds the very queryset the list showed (same filters, same search) as the staff member who asked, then
works in chunks through the ledger service. Every write is idempotent: a member's posting is keyed by the form's
one-time token, and an entry approved, rejected or reversed once is refused the second time, so a job that runs
twice (a worker lost mid-way, a resubmitted form) changes nothing twice.
"""

import logging

from celery import shared_task
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import HttpRequest, QueryDict

from ..errors import LoyaltyError
from ..models import Coupon, EntrySource, LedgerEntry, Member, Reward
from ..services import (
    entries_approve_bulk,
    entries_post_bulk,
    entries_reject_bulk,
    entries_reverse_bulk,
    reward_give,
)

log = logging.getLogger(__name__)
CHUNK = 5_000
TASK_OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "time_limit": 3600}


def matching(model, user, query: str):
    """The rows the admin list of `model` showed for this querystring, as this user saw them."""
    request = HttpRequest()
    request.method = "GET"
    request.GET = QueryDict(query, mutable=True)
    request.GET.pop("p", None)
    request.user = user
    # The admin registry is filled by django.contrib.admin's autodiscovery, in a worker as in the web process.
    changelist = admin.site._registry[model].get_changelist_instance(request)
    return changelist.get_queryset(request)


def matching_members(user, query: str):
    return matching(Member, user, query)


def id_chunks(queryset):
    """Ids in primary-key order, a chunk at a time (keyset pagination: no OFFSET over millions of rows)."""
    ids = queryset.order_by("pk").values_list("pk", flat=True)
    last = 0
    while chunk := list(ids.filter(pk__gt=last)[:CHUNK]):
        yield chunk
        last = chunk[-1]


@shared_task(name="loyalty.admin_adjust_points_matching", **TASK_OPTIONS)
def adjust_points_matching(*, user_id, query, token, points, apply_type, reason, counts=True):
    from ..services.previews import adjust_postings

    user = get_user_model().objects.get(pk=user_id)
    totals = {"posted": 0, "already": 0, "refused": 0, "points": 0}
    for chunk in id_chunks(matching_members(user, query)):
        postings = adjust_postings(
            chunk,
            points=points,
            apply_type=apply_type,
            reason=reason,
            counts=counts,
            key=lambda member_id: f"admin:{token}:{member_id}",
        )
        result = entries_post_bulk(postings=postings, actor=user, source=EntrySource.ADMIN, action="adjust")
        totals["posted"] += result.posted
        totals["already"] += result.already_applied
        totals["refused"] += len(result.refused)
        totals["points"] += result.points_credited - result.points_debited
    log.info("adjust points of matching members (token %s): %s", token, totals)
    return totals


@shared_task(name="loyalty.admin_give_reward_matching", **TASK_OPTIONS)
def give_reward_matching(*, user_id, query, token, reward_id, deduct, reason):
    user = get_user_model().objects.get(pk=user_id)
    reward = Reward.objects.get(pk=reward_id)
    totals = {"given": 0, "refused": 0}
    for chunk in id_chunks(matching_members(user, query)):
        keys = [f"admin:{token}:{m}" for m in chunk]
        done = set(Coupon.objects.filter(idempotency_key__in=keys).values_list("member_id", flat=True))
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


def _approve(entry_ids, user, reason, dry_run=False):
    return entries_approve_bulk(
        entry_ids=entry_ids, actor=user, reason=reason or "Pending points approved", dry_run=dry_run
    )


def _reject(entry_ids, user, reason, dry_run=False):
    return entries_reject_bulk(entry_ids=entry_ids, actor=user, reason=reason or "-", dry_run=dry_run)


def _reverse(entry_ids, user, reason, dry_run=False):
    # The staff default negative-balance policy applies, as on a reversal of picked rows.
    return entries_reverse_bulk(
        entry_ids=entry_ids, reason=reason or "-", actor=user, source=EntrySource.ADMIN, dry_run=dry_run
    )


ENTRY_ACTIONS = {"approve_pending": _approve, "reject_pending": _reject, "reverse_conversion": _reverse}


@shared_task(name="loyalty.admin_entries_action_matching", **TASK_OPTIONS)
def entries_action_matching(*, user_id, query, action, reason):
    """Approve, reject or reverse every ledger entry the list showed, through the ledger's bulk path."""
    user = get_user_model().objects.get(pk=user_id)
    run = ENTRY_ACTIONS[action]
    totals = {"moved_or_posted": 0, "refused": 0, "members": 0}
    for chunk in id_chunks(matching(LedgerEntry, user, query)):
        result = run(chunk, user, reason)
        totals["moved_or_posted"] += result.posted
        totals["refused"] += len(result.refused)
        totals["members"] += result.members_touched
    log.info("%s on matching entries (by user %s): %s", action, user_id, totals)
    return totals


def entries_action_preview(*, queryset, user, action, limit: int = 100_000):
    """The effect of a "select all" entries action (loyalty.services.previews): the job's own bulk call over the
    matching entries (the first `limit`), in dry-run."""
    from ..services.previews import _dry

    ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:limit])
    return _dry(lambda: ENTRY_ACTIONS[action](ids, user, "", dry_run=True), len(ids))
