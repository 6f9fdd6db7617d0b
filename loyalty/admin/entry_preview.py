"""What Reverse conversion, Approve pending and Reject pending will do to each picked entry, before they are confirmed.

The actions post the entries one by one in entry-number order, each seeing the balance the earlier ones left; the
preview walks them in that order too, carrying each member's available points from row to row, and words each refusal
as the ledger service will. The rules come from the service's pure functions (loyalty/services/ledger.py); this
module only gathers each entry's facts for them.
"""

from dataclasses import dataclass

from django.db.models import Sum
from django.utils.translation import gettext as _

from ..models import EntryStatus, LedgerEntry, NegativeBalancePolicy, Shortfall
from ..services.ledger import (
    not_pending_refusal,
    policy_or_default,
    resolve_debit,
    reversal_debit_refusal,
    reversal_points,
    reversal_refusal,
    taken_back_in_full_refusal,
)

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


def preview_entries(entries, action: str, *, policy: str | None = None) -> list[EntryOutcome]:
    """Each entry's outcome, in the order the action posts them (entry number); `entries` carry their member.

    `policy` is the negative-balance policy the reversal will use (the program's when None).
    """
    entries = sorted(entries, key=lambda e: e.pk)
    facts = EntryFacts.load(entries)
    policy = policy_or_default(policy) if action == REVERSE else policy
    available = {}  # member id -> available points after the rows so far
    status = {}  # entry id -> status after the rows so far (a rejected earning takes its pending take-backs along)
    outcomes = []
    for entry in entries:
        before = available.setdefault(entry.member_id, entry.member.available_points)
        current = status.get(entry.pk, entry.status)
        if action == REVERSE:
            change, outcome, refused = _reverse(entry, current, before, facts, policy)
        else:
            change, outcome, refused = _approve_or_reject(entry, current, action)
        if not refused and current == EntryStatus.PENDING:
            status[entry.pk] = EntryStatus.ACTIVE if action == APPROVE else EntryStatus.REJECTED
            if status[entry.pk] == EntryStatus.REJECTED:
                status.update(dict.fromkeys(facts.pending_take_backs.get(entry.pk, []), EntryStatus.REJECTED))
        available[entry.member_id] = before + change
        outcomes.append(EntryOutcome(entry, before, before + change, outcome, refused))
    return outcomes


def _reverse(entry, current, available, facts, policy) -> tuple[int, str, bool]:
    """(change of available points, what happens, refused?) for reversing one entry."""
    refusal = reversal_refusal(
        entry_id=entry.pk,
        kind=entry.kind,
        status=current,
        reversed_by_id=facts.reversed_by.get(entry.pk),
        nothing_taken=entry.pk in facts.nothing_taken,
    )
    if refusal:
        return 0, refusal, True
    if current == EntryStatus.PENDING:
        return 0, _("Rejected: the pending points never become available."), False
    remaining = reversal_points(points=entry.points, taken_back=facts.taken_back.get(entry.pk, 0))
    if remaining == 0:
        return 0, taken_back_in_full_refusal(entry_id=entry.pk), True
    posted, short = resolve_debit(available=available, points=-remaining, policy=policy)
    if short and policy == NegativeBalancePolicy.FORBID:
        return 0, reversal_debit_refusal(remaining=remaining, available=available), True
    if short:
        text = _("A reversal entry of %(posted)s points; %(short)s could not be taken (recorded as a shortfall).")
        return posted, text % {"posted": f"{posted:+,}", "short": f"{short:,}"}, False
    return posted, _("A reversal entry of %(points)s points.") % {"points": f"{posted:+,}"}, False


def _approve_or_reject(entry, current, action) -> tuple[int, str, bool]:
    if current != EntryStatus.PENDING:
        return 0, not_pending_refusal(entry_id=entry.pk, status_label=EntryStatus(current).label), True
    if action == APPROVE:
        return entry.points, _("The points become available now."), False
    return 0, _("Rejected: the pending points never become available."), False
