"""What Reverse conversion, Approve pending and Reject pending will do to each picked entry, before they are confirmed.

The actions post the entries one by one in entry-number order, each seeing the balance the earlier ones left; the
preview walks them in that order too, carrying each member's available points (and a support agent's limits) from
row to row, and words each refusal as the ledger service will. The rules are the rulebook's (loyalty/rules.py) and
the staff policy's (loyalty/services/staff.py), in the order entry_reverse, entry_approve and entry_reject apply
them; this module only gathers each entry's facts for them.
"""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Sum
from django.utils.translation import gettext as _

from .. import rules
from ..errors import LoyaltyError
from ..models import EntryStatus, LedgerEntry, Shortfall
from ..services.ledger import policy_or_default
from ..services.staff import StaffPolicy, staff_policy

REVERSE, APPROVE, REJECT = "reverse_conversion", "approve_pending", "reject_pending"


@dataclass
class EntryOutcome:
    """One picked entry: the member's available points before and after it, and what happens (or why not)."""

    entry: LedgerEntry
    available_before: int
    available_after: int
    outcome: str
    refused: bool = False


@dataclass
class EntryFacts:
    """What the rules need to know about the picked entries beyond their own rows (three queries in all)."""

    reversed_by: dict  # entry id -> id of the reversal entry linked to it
    nothing_taken: set  # entry ids an earlier reversal could take nothing from (a shortfall stands in)
    taken_back: dict  # earning id -> points its partial take-backs took (positive), pending ones counted
    pending_take_backs: dict  # earning id -> ids of its pending take-backs (rejected with it)

    @classmethod
    def load(cls, entries) -> "EntryFacts":
        ids = [e.pk for e in entries]
        reversed_by = dict(LedgerEntry.objects.filter(reverses__in=ids).values_list("reverses_id", "pk"))
        nothing_taken = set(Shortfall.objects.filter(reversal_of__in=ids).values_list("reversal_of_id", flat=True))
        take_backs = LedgerEntry.objects.filter(takes_back__in=ids).exclude(status=EntryStatus.REJECTED)
        taken_back = {
            row["takes_back"]: -row["total"] for row in take_backs.values("takes_back").annotate(total=Sum("points"))
        }
        pending_take_backs = {}
        for earning_id, take_back_id in take_backs.filter(status=EntryStatus.PENDING).values_list("takes_back", "pk"):
            pending_take_backs.setdefault(earning_id, []).append(take_back_id)
        return cls(reversed_by, nothing_taken, taken_back, pending_take_backs)


STAFF_ACTIONS = {REVERSE: "reverse", APPROVE: "approve", REJECT: "approve"}


def preview_entries(entries, action: str, *, actor, policy: str | None = None) -> list[EntryOutcome]:
    """Each entry's outcome, in the order the action posts them (entry number); `entries` carry their member.

    `actor`: the staff user who will confirm (a support agent's per-action limit and daily total count row by row);
    `policy`: the negative-balance policy the reversal will use (the program's when None).
    """
    entries = sorted(entries, key=lambda e: e.pk)
    facts = EntryFacts.load(entries)
    policy = policy_or_default(policy) if action == REVERSE else policy
    staff = _staff(actor, action)
    available = {}  # member id -> available points after the rows so far
    status = {}  # entry id -> status after the rows so far (a rejected earning takes its pending take-backs along)
    outcomes = []
    for entry in entries:
        before = available.setdefault(entry.member_id, entry.member.available_points)
        current = status.get(entry.pk, entry.status)
        if isinstance(staff, str):  # the staff member may not take this action at all
            change, outcome, refused = 0, staff, True
        elif action == REVERSE:
            change, outcome, refused = _reverse(entry, current, before, facts, policy, staff)
        else:
            change, outcome, refused = _approve_or_reject(entry, current, action, staff)
        if not refused and current == EntryStatus.PENDING:
            status[entry.pk] = EntryStatus.ACTIVE if action == APPROVE else EntryStatus.REJECTED
            if status[entry.pk] == EntryStatus.REJECTED:
                status.update(dict.fromkeys(facts.pending_take_backs.get(entry.pk, []), EntryStatus.REJECTED))
        available[entry.member_id] = before + change
        outcomes.append(EntryOutcome(entry, before, before + change, outcome, refused))
    return outcomes


def _staff(actor, action) -> StaffPolicy | str:
    """The limits that will hold for `actor`, read as the service reads them (nothing is locked past this call),
    or the sentence that refuses the action outright."""
    try:
        with transaction.atomic():
            return staff_policy(actor, STAFF_ACTIONS[action])
    except LoyaltyError as refused:
        return refused.message


def _staff_refusal(staff: StaffPolicy, points: int) -> str | None:
    """The staff policy's refusal of moving `points` for this row; else the row counts toward the day's total."""
    if refusal := staff.refusal(points):
        return refusal
    staff.add(points)
    return None


def _reverse(entry, current, available, facts, policy, staff) -> tuple[int, str, bool]:
    """(change of available points, what happens, refused?) for reversing one entry, as entry_reverse decides."""
    taken_back = facts.taken_back.get(entry.pk, 0) if entry.points > 0 else 0
    remaining = rules.reversal_remaining(points=entry.points, taken_back=taken_back)
    refusal = rules.reversal_refusal(
        entry_id=entry.pk,
        kind=entry.kind,
        status=current,
        reversed_by=facts.reversed_by.get(entry.pk),
        reversed_without_entry=entry.pk in facts.nothing_taken,
        remaining=remaining,
    )
    if refusal:
        return 0, refusal, True
    if current == EntryStatus.PENDING:
        if refusal := _staff_refusal(staff, entry.points):
            return 0, refusal, True
        return 0, _("Rejected: the pending points never become available."), False
    if refusal := _staff_refusal(staff, remaining):
        return 0, refusal, True
    decision = rules.decide(
        available=available,
        points=-remaining,
        apply_type=rules.RELATIVE,
        status=EntryStatus.ACTIVE,
        policy=policy,
        what="reverse",
        email=entry.member.email,
    )
    if decision.refusal:
        return 0, decision.refusal, True
    posted, short = decision.posted, decision.shortfall
    if short:
        text = _("A reversal entry of %(posted)s points; %(short)s could not be taken (recorded as a shortfall).")
        return posted, text % {"posted": f"{posted:+,}", "short": f"{short:,}"}, False
    return posted, _("A reversal entry of %(points)s points.") % {"points": f"{posted:+,}"}, False


def _approve_or_reject(entry, current, action, staff) -> tuple[int, str, bool]:
    """As entry_approve and entry_reject decide: only a pending entry, within a support agent's limits."""
    refusal = rules.not_pending_refusal(entry_id=entry.pk, status=current) or _staff_refusal(staff, entry.points)
    if refusal:
        return 0, refusal, True
    if action == APPROVE:
        return entry.points, _("The points become available now."), False
    return 0, _("Rejected: the pending points never become available."), False
