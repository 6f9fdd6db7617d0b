"""Customer groups: static lists from uploaded emails, and points actions on a whole group through the bulk path.

A group action posts through the ledger's bulk path in ranges of members (GroupActionRange), each range its own
transaction, so the admin can draw progress; a big action's ranges are Celery tasks any worker takes. Every posting
carries the key f"group:{action}:member{member}", so a retried or resumed run never posts twice for the same member.
Undo reverses the action's entries as one batch.
"""

import re
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.translation import gettext as _

from ..actors import SystemActor
from ..background import range_delivery_counted
from ..errors import LoyaltyError
from ..models import (
    CustomerGroup,
    CustomerGroupMember,
    EntrySource,
    GroupAction,
    GroupActionRange,
    JobStatus,
    Member,
    ProgramSettings,
)
from ..queueing import queue_task
from ..rules import points_refusal
from ..selectors_groups import member_ids_of
from .ledger_bulk import entries_post_bulk, entries_reverse_bulk
from .previews import (
    group_action_entry_ids,
    group_action_postings,
    group_action_undo_reason,
    lifetime_choice,
)
from .staff import staff_policy

CHUNK = 5000  # members per range (one transaction) of a group action
MAX_PROBLEMS = 50  # refusals kept on the action for the merchant to read
EMAIL_SPLIT = re.compile(r"[\s,;]+")
GROUP_JOB = SystemActor("customer group action")


@dataclass
class StaticListResult:
    added: int = 0
    already_in: int = 0
    unknown: list[str] = field(default_factory=list)


def _emails_from(text: str) -> list[str]:
    """Every email-looking word of an upload (a plain list or a CSV export), lower-cased, in order, once each."""
    seen = {}
    for word in EMAIL_SPLIT.split(text or ""):
        word = word.strip().strip("\"'").lower()
        if "@" in word:
            seen.setdefault(word, None)
    return list(seen)


def group_static_members_add(*, group: CustomerGroup, text: str) -> StaticListResult:
    """Add the members whose emails appear in `text` to a static group; unknown emails are reported, not created."""
    if not group.is_static:
        raise LoyaltyError(_("%(group)s is a saved filter, not a static list.") % {"group": group.name})
    emails = _emails_from(text)
    if not emails:
        raise LoyaltyError(_("No email addresses found in the upload."))
    found = {}
    for i in range(0, len(emails), 5000):
        found.update(Member.objects.filter(email__in=emails[i : i + 5000]).values_list("email", "pk"))
    result = StaticListResult(unknown=[e for e in emails if e not in found])
    with transaction.atomic():
        present = set(CustomerGroupMember.objects.filter(group=group).values_list("member_id", flat=True))
        new = [CustomerGroupMember(group=group, member_id=pk) for pk in found.values() if pk not in present]
        CustomerGroupMember.objects.bulk_create(new, batch_size=5000, ignore_conflicts=True)
    result.added = len(new)
    result.already_in = len(found) - len(new)
    return result


def group_action_create(
    *,
    group: CustomerGroup,
    apply_type: str,
    points: int,
    comment: str,
    actor,
    request_token: str | None = None,
    change_kind: str = "correction",
    counts_toward_lifetime: bool | None = None,
) -> GroupAction:
    """Check the request and queue the action; the members are taken when it starts.

    request_token: the confirming form's one-time token; the same form sent twice gives back the first action
    instead of a second one. A staff actor needs the permission to act on groups (StaffRefused otherwise); a
    support agent's limits are applied member by member when it runs. `counts_toward_lifetime`: whether its entries
    move lifetime (and so tiers); None takes the program's default for `change_kind`.
    """

    comment = (comment or "").strip()
    if not comment:
        raise LoyaltyError(_("A comment is required: members see it in their activity."))
    if refusal := points_refusal(points, apply_type):
        raise LoyaltyError(refusal)
    with transaction.atomic():
        staff_policy(actor, "group")
        if request_token and (sent := GroupAction.objects.filter(request_token=request_token).first()):
            return sent
        action = GroupAction.objects.create(
            request_token=request_token or None,
            group=group,
            apply_type=apply_type,
            points=points,
            comment=comment[:500],
            change_kind=change_kind,
            counts_toward_lifetime=lifetime_choice(change_kind, counts_toward_lifetime),
            created_by=None if isinstance(actor, SystemActor) else actor,
        )
        transaction.on_commit(lambda: queue_task("loyalty.group_action_run", action.pk))
    return action


def _actor_of(action: GroupAction):
    return action.created_by or GROUP_JOB


def group_action_run(*, action_id: int, spread: bool = False) -> GroupAction:
    """Post the action for every member of the group (a snapshot taken at the start), range by range.

    The snapshot is kept as ranges of CHUNK members (GroupActionRange), each posted in one transaction. spread=True
    (the action's Celery task) with more than settings.GROUP_ACTION_SPREAD_MEMBERS members queues one task per range
    (loyalty.group_action_range), which any worker takes, and the range that completes the action queues its final
    step; otherwise the ranges go here, one after another. A resumed action posts only the ranges not done.
    """
    action = GroupAction.objects.select_related("group", "created_by").get(pk=action_id)
    if action.status not in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED):
        return action
    with transaction.atomic():
        if not action.ranges.exists():
            member_ids = member_ids_of(action.group)
            GroupActionRange.objects.bulk_create(
                [
                    GroupActionRange(action=action, position=n, member_ids=member_ids[start : start + CHUNK])
                    for n, start in enumerate(range(0, len(member_ids), CHUNK))
                ],
                ignore_conflicts=True,
            )
        action.ranges.filter(done=False).update(attempts=0)
        GroupAction.objects.filter(pk=action.pk).update(
            status=JobStatus.RUNNING,
            started_at=action.started_at or timezone.now(),
            finished_at=None,
            **_progress(action),
        )
    pending = list(action.ranges.filter(done=False).order_by("position").values_list("pk", flat=True))
    total = GroupAction.objects.values_list("members_total", flat=True).get(pk=action.pk)
    if pending and spread and total > settings.GROUP_ACTION_SPREAD_MEMBERS:
        for range_id in pending:
            queue_task("loyalty.group_action_range", range_id)
        action.refresh_from_db()
        return action
    try:
        for range_id in pending:
            group_action_range_apply(range_id=range_id)
    except Exception as exc:
        group_action_fail(action_id=action.pk, message=f"Stopped: {exc}")
        raise
    return group_action_close(action_id=action.pk)


def group_action_fail(*, action_id: int, message: str) -> None:
    GroupAction.objects.filter(pk=action_id, status__in=(JobStatus.RUNNING, JobStatus.QUEUED)).update(
        status=JobStatus.FAILED, problems=Concat(F("problems"), Value(f"{message}\n")), finished_at=timezone.now()
    )


def _progress(action: GroupAction) -> dict:
    """The action's progress and counters: the sums over its done ranges (members in all of them for the total)."""
    ranges = list(
        action.ranges.order_by("position").values_list(
            "done", "member_ids", "posted", "unchanged", "refused", "points_credited", "points_debited", "problems"
        )
    )
    done = [r for r in ranges if r[0]]
    return {
        "members_total": sum(len(r[1]) for r in ranges),
        "members_done": sum(len(r[1]) for r in done),
        "posted": sum(r[2] for r in done),
        "unchanged": sum(r[3] for r in done),
        "refused": sum(r[4] for r in done),
        "points_credited": sum(r[5] for r in done),
        "points_debited": sum(r[6] for r in done),
        "problems": "".join(r[7] for r in done)[:20_000],
    }


def group_action_range_start(*, range_id: int) -> bool:
    """Count a delivery of the range (committed at once); False past settings.JOB_MAX_STARTS deliveries."""
    return range_delivery_counted(GroupActionRange, range_id)


def group_action_range_apply(*, range_id: int) -> str:
    """Post one range in one transaction: "done", "last" (the action's last range not done), or "skipped" (already
    done, or the action is no longer running)."""
    with transaction.atomic():
        span = GroupActionRange.objects.select_for_update().filter(pk=range_id).first()
        if span is None or span.done:
            return "skipped"
        action = GroupAction.objects.select_related("created_by").get(pk=span.action_id)
        if action.status != JobStatus.RUNNING:
            return "skipped"
        result = _run_chunk(action, span.member_ids, ProgramSettings.load().negative_balance_policy)
        GroupActionRange.objects.filter(pk=span.pk).update(
            done=True,
            finished_at=timezone.now(),
            posted=result.posted + result.already_applied,
            unchanged=result.nothing_to_do,
            refused=len(result.refused),
            points_credited=result.points_credited,
            points_debited=result.points_debited,
            problems="".join(f"{reason}\n" for _seq, reason in result.refused[:MAX_PROBLEMS]),
        )
        # The ranges meet last on the action's row, one at a time: exactly one sees none left.
        GroupAction.objects.select_for_update().filter(pk=action.pk).values_list("pk", flat=True).first()
        progress = _progress(action)
        GroupAction.objects.filter(pk=action.pk).update(**progress)
    return "last" if progress["members_done"] == progress["members_total"] else "done"


def group_action_close(*, action_id: int) -> GroupAction:
    """The action's final step, once every range is done (safe to run twice)."""
    with transaction.atomic():
        action = GroupAction.objects.select_for_update().get(pk=action_id)
        if action.status == JobStatus.RUNNING and not action.ranges.filter(done=False).exists():
            GroupAction.objects.filter(pk=action.pk).update(
                status=JobStatus.DONE, finished_at=timezone.now(), **_progress(action)
            )
    action.refresh_from_db()
    return action


def _run_chunk(action: GroupAction, member_ids: list[int], policy: str):
    postings = group_action_postings(action, member_ids)
    return entries_post_bulk(
        postings=postings,
        actor=_actor_of(action),
        source=EntrySource.GROUP,
        source_ref=action.pk,
        action="group",
        policy=policy,
    )


def group_action_undo_request(*, action: GroupAction, actor) -> GroupAction:
    """Check the action can be undone and queue the undo (asked twice, the second is told it is undoing already)."""
    with transaction.atomic():
        staff_policy(actor, "group")
        action = GroupAction.objects.select_for_update().get(pk=action.pk)
        if action.status not in (JobStatus.DONE, JobStatus.FAILED):
            raise LoyaltyError(
                _("Group action #%(id)s is %(status)s; only a finished action can be undone.")
                % {"id": action.pk, "status": action.get_status_display().lower()}
            )
        action.status = JobStatus.UNDOING
        action.undone_by = None if isinstance(actor, SystemActor) else actor
        action.undo_started_at = timezone.now()
        action.save(update_fields=["status", "undone_by", "undo_started_at"])
        transaction.on_commit(lambda: queue_task("loyalty.group_action_undo", action.pk))
    return action


def group_action_undo(*, action_id: int) -> GroupAction:
    """Reverse every entry the action posted, as one batch. Spent points follow the automatic-revert policy."""
    action = GroupAction.objects.select_related("undone_by", "created_by").get(pk=action_id)
    if action.status != JobStatus.UNDOING:
        return action
    result = entries_reverse_bulk(
        entry_ids=group_action_entry_ids(action),
        reason=group_action_undo_reason(action),
        actor=action.undone_by or GROUP_JOB,
        source=EntrySource.GROUP,
        source_ref=action.pk,
        action="group",
        policy=ProgramSettings.load().revert_negative_balance_policy,
        free_keys=True,
    )
    problems = "".join(f"Undo: {reason}\n" for _seq, reason in result.refused[:MAX_PROBLEMS])
    GroupAction.objects.filter(pk=action.pk).update(
        status=JobStatus.UNDONE, undone_at=timezone.now(), problems=Concat(F("problems"), Value(problems))
    )
    action.refresh_from_db()
    return action
