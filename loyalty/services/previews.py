"""What a bulk or destructive change will do, before it is confirmed: the very service that applies it, in dry-run.

Every preview here calls the ledger's bulk path (ledger_bulk.entries_post_bulk or entries_reverse_bulk) with the
same postings, actor, staff action and policy the confirmed change will use, and `dry_run=True`: the rules are
applied once, by the code that applies them, so what a preview counts is what the change does (one rule, no second
implementation). The single path gives the same ledger as the bulk path (tests/loyalty/test_bulk_matches_single.py),
so a preview of Adjust points on one member holds for points_adjust as well.
"""

from dataclasses import dataclass, field

from .. import rules
from ..errors import LoyaltyError
from ..models import EntryKind, EntrySource, GroupAction, LedgerEntry, Member, ProgramSettings
from ..rules import RELATIVE, adjustment_counts
from ..selectors_groups import member_ids_of
from .ledger_bulk import BulkResult, MemberAfter, Posting, entries_post_bulk, entries_reverse_bulk

MEMBERS_SHOWN = 50


@dataclass
class Preview:
    """A change's effect: the dry-run's result, or the sentence that refuses the whole change (`refusal`)."""

    result: BulkResult = field(default_factory=BulkResult)
    refusal: str = ""
    rows: int = 0  # postings (or entries) the change covers

    @property
    def members(self) -> list[MemberAfter]:
        return self.result.members[:MEMBERS_SHOWN]

    @property
    def members_affected(self) -> int:
        return self.result.members_touched

    @property
    def points_in(self) -> int:
        return self.result.points_credited

    @property
    def points_out(self) -> int:
        return self.result.points_debited

    @property
    def refused(self) -> list[str]:
        return [reason for _seq, reason in self.result.refused]

    def totals(self) -> dict:
        """The figures a page or a job keeps (JSON-ready)."""
        r = self.result
        return {
            "rows": self.rows,
            "posted": r.posted,
            "members": r.members_touched,
            "points_in": r.points_credited,
            "points_out": r.points_debited,
            "tiers_up": r.tiers_up,
            "tiers_down": r.tiers_down,
            "refused": len(r.refused),
            "already_applied": r.already_applied,
            "nothing_to_do": r.nothing_to_do,
            "shortfalls": r.shortfalls,
        }


def _dry(run, rows: int) -> Preview:
    try:
        return Preview(result=run(), rows=rows)
    except LoyaltyError as refused:  # the staff member may not take this action at all
        return Preview(refusal=refused.message, rows=rows)


def lifetime_choice(change_kind: str, answer: bool | None) -> bool:
    """Whether a staff adjustment counts toward lifetime: the answer given, else the program's default for its kind."""
    return adjustment_counts(change_kind, answer=answer, defaults=ProgramSettings.load().lifetime_defaults())


def adjust_postings(member_ids, *, points: int, apply_type: str, reason: str, counts: bool, key=None) -> list:
    """The postings of Adjust points for these members (key(member_id): each posting's idempotency key)."""
    return [
        Posting(
            member_id,
            points,
            reason,
            kind=EntryKind.ADJUSTMENT,
            apply_type=apply_type,
            counts_toward_lifetime=counts,
            idempotency_key=key(member_id) if key else None,
        )
        for member_id in member_ids
    ]


def adjust_preview(
    *, member_ids, points: int, apply_type: str = RELATIVE, reason: str, counts: bool, actor, key=None
) -> Preview:
    """Adjust points of these members (a member's page, the list action, a select-all job), as the staff action
    "adjust" posts it: the program's negative-balance policy, the actor's limits, in member order."""
    member_ids = sorted(set(member_ids))
    postings = adjust_postings(
        member_ids, points=points, apply_type=apply_type, reason=reason or "-", counts=counts, key=key
    )
    return _dry(
        lambda: entries_post_bulk(
            postings=postings, actor=actor, source=EntrySource.ADMIN, action="adjust", dry_run=True
        ),
        len(postings),
    )


def group_action_postings(group_action: GroupAction, member_ids) -> list[Posting]:
    """A group action's postings for these members: one per member, keyed by action and member (resumable)."""
    return adjust_postings(
        member_ids,
        points=group_action.points,
        apply_type=group_action.apply_type,
        reason=group_action.comment,
        counts=group_action.counts_toward_lifetime,
        key=(lambda member_id: f"group:{group_action.pk}:member{member_id}") if group_action.pk else None,
    )


def group_action_preview(
    *, group, apply_type: str, points: int, comment: str, counts: bool, change_kind: str, actor
) -> Preview:
    """A group action on every member of the group now, as group_action_run will post it (the staff action "group",
    the program's policy). Members who join or leave before it starts change its figures, nothing else."""
    action = GroupAction(
        group=group,
        apply_type=apply_type,
        points=points,
        comment=comment or "-",
        change_kind=change_kind,
        counts_toward_lifetime=counts,
    )
    postings = group_action_postings(action, member_ids_of(group))
    policy = ProgramSettings.load().negative_balance_policy
    return _dry(
        lambda: entries_post_bulk(
            postings=postings, actor=actor, source=EntrySource.GROUP, action="group", policy=policy, dry_run=True
        ),
        len(postings),
    )


def reverse_preview(
    *, entry_ids, reason: str, actor, source: str, action: str, policy: str | None = None, source_ref=None
) -> Preview:
    """An undo (of a group action, a Reward past actions run, an import) or a bulk reversal: entries_reverse_bulk
    in dry-run with the arguments the undo will give it."""
    entry_ids = list(entry_ids)
    return _dry(
        lambda: entries_reverse_bulk(
            entry_ids=entry_ids,
            reason=reason,
            actor=actor,
            source=source,
            source_ref=source_ref,
            action=action,
            policy=policy,
            dry_run=True,
        ),
        len(entry_ids),
    )


def group_action_entry_ids(action: GroupAction) -> list[int]:
    """The entries a group action's undo reverses."""
    return list(
        LedgerEntry.objects.filter(source=EntrySource.GROUP, source_ref=action.pk)
        .exclude(kind=EntryKind.REVERSAL)
        .values_list("pk", flat=True)
    )


def group_action_undo_reason(action: GroupAction) -> str:
    return f"Undo of group action #{action.pk}: {action.comment}"[:500]


def group_action_undo_preview(*, action: GroupAction, actor) -> Preview:
    """Undo this action, as group_action_undo reverses it (the automatic-revert policy for spent points)."""
    return reverse_preview(
        entry_ids=group_action_entry_ids(action),
        reason=group_action_undo_reason(action),
        actor=actor,
        source=EntrySource.GROUP,
        source_ref=action.pk,
        action="group",
        policy=ProgramSettings.load().revert_negative_balance_policy,
    )


def reward_give_preview(*, member_ids, reward, deduct: bool, actor) -> Preview:
    """Give reward to many members ("select all"): the redemptions it posts, through the bulk path in dry-run under
    the rule reward_give applies (a cost beyond the available points is refused, as the "forbid" policy refuses a
    debit; the staff action "reward" and its limits). A free reward moves no points: the preview counts members."""
    member_ids = sorted(set(member_ids))
    if not deduct or not reward.points_cost:
        return Preview(rows=len(member_ids))
    postings = [
        Posting(member_id, -reward.points_cost, f"Reward: {reward.name}", kind=EntryKind.REDEMPTION)
        for member_id in member_ids
    ]
    preview = _dry(
        lambda: entries_post_bulk(
            postings=postings,
            actor=actor,
            source=EntrySource.ADMIN,
            action="reward",
            policy="forbid",
            dry_run=True,
        ),
        len(postings),
    )
    _word_as_reward_refusals(preview, postings, reward)
    return preview


def _word_as_reward_refusals(preview: Preview, postings: list[Posting], reward) -> None:
    """A row the dry-run refused for want of points reads as reward_give words it (rules.reward_refusal), not as a
    debit; a refusal for another reason (an agent's limits) stays as it is."""
    refused_ids = [postings[seq].member_id for seq, _reason in preview.result.refused]
    members = Member.objects.in_bulk(refused_ids)
    worded, by_member = [], {}
    for seq, reason in preview.result.refused:
        member = members.get(postings[seq].member_id)
        refusal = member and rules.reward_refusal(
            reward.name, reward.points_cost, member.email, member.available_points
        )
        worded.append((seq, refusal or reason))
        if refusal:
            by_member[member.pk] = (reason, refusal)
    preview.result.refused = worded
    for row in preview.result.members:  # the member rows repeat their refusals
        if row.member_id in by_member:
            debit, refusal = by_member[row.member_id]
            row.refusals = [refusal if text == debit else text for text in row.refusals]
