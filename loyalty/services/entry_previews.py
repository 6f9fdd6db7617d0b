"""What Reverse conversion, Approve pending and Reject pending will do to each picked entry, before they are confirmed.

The admin posts the picked entries one by one in entry-number order, each through its service (entry_reverse,
entry_approve, entry_reject), each seeing the balance the earlier ones left. The preview does exactly that inside a
savepoint it then rolls back: the same services decide every outcome, refusal and limit (there is no second copy of
their rules to drift), and nothing of it stays. Row locks the services take are released with the rollback.
"""

from dataclasses import dataclass

from django.db import transaction
from django.utils.translation import gettext as _

from ..errors import LoyaltyError
from ..models import LedgerEntry, Member
from .ledger import entry_approve, entry_reject, entry_reverse

REVERSE, APPROVE, REJECT = "reverse_conversion", "approve_pending", "reject_pending"
PREVIEW_REASON = "preview"  # the reversal and the rejection ask for a reason; the preview's is never kept


@dataclass
class EntryOutcome:
    """One picked entry: the member's available points before and after it, and what happens (or why not)."""

    entry: LedgerEntry
    available_before: int
    available_after: int
    outcome: str
    refused: bool = False


def entries_preview(entries, action: str, *, actor, policy: str | None = None) -> list[EntryOutcome]:
    """Each entry's outcome, in the order the action posts them (entry number), found by posting and rolling back.

    entries: LedgerEntry rows; action: REVERSE, APPROVE or REJECT; actor: the staff user who will confirm (their
    permission, per-action limit and daily total hold row by row, as when they confirm); policy: the negative-balance
    policy of a reversal (the program's when None). Raises nothing for a refused row: its sentence is its outcome.
    """
    with transaction.atomic():
        outcomes = [_outcome(entry, action, actor, policy) for entry in sorted(entries, key=lambda e: e.pk)]
        transaction.set_rollback(True)  # everything the block posted goes; an error rolls it back as well
    return outcomes


def _available(member_id: int) -> int:
    return Member.objects.filter(pk=member_id).values_list("available_points", flat=True).get()


def _outcome(entry: LedgerEntry, action: str, actor, policy: str | None) -> EntryOutcome:
    before = _available(entry.member_id)
    try:
        text = _post(entry, action, actor, policy)
    except LoyaltyError as refused:
        return EntryOutcome(entry, before, before, refused.message, refused=True)
    return EntryOutcome(entry, before, _available(entry.member_id), text)


def _post(entry: LedgerEntry, action: str, actor, policy: str | None) -> str:
    if action == APPROVE:
        entry_approve(entry=entry.pk, actor=actor)
        return _("The points become available now.")
    if action == REJECT:
        entry_reject(entry=entry.pk, actor=actor, reason=PREVIEW_REASON)
        return _("Rejected: the pending points never become available.")
    result = entry_reverse(entry=entry.pk, reason=PREVIEW_REASON, actor=actor, policy=policy)
    if result.entry is not None and result.entry.pk == entry.pk:  # a pending entry: rejected, not reversed
        return _("Rejected: the pending points never become available.")
    posted = result.entry.points if result.posted else 0
    if result.shortfall:
        text = _("A reversal entry of %(posted)s points; %(short)s could not be taken (recorded as a shortfall).")
        return text % {"posted": f"{posted:+,}", "short": f"{result.shortfall:,}"}
    return _("A reversal entry of %(points)s points.") % {"points": f"{posted:+,}"}
