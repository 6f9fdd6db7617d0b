"""Writes of the loyalty app. Every change of points goes through the ledger service (ledger.py, ledger_bulk.py)."""

from .ledger import (
    RELATIVE,
    SET_TO,
    PostResult,
    entry_approve,
    entry_reject,
    entry_reverse,
    entry_take_back,
    points_adjust,
    points_earn,
    reward_give,
)
from .ledger_bulk import (
    BulkResult,
    Posting,
    entries_approve_bulk,
    entries_post_bulk,
    entries_reject_bulk,
    entries_reverse_bulk,
    pending_release_matured,
    tiers_recompute_all,
)

__all__ = [
    "RELATIVE",
    "SET_TO",
    "BulkResult",
    "PostResult",
    "Posting",
    "entries_approve_bulk",
    "entries_post_bulk",
    "entries_reject_bulk",
    "entries_reverse_bulk",
    "entry_approve",
    "entry_reject",
    "entry_reverse",
    "entry_take_back",
    "pending_release_matured",
    "points_adjust",
    "points_earn",
    "reward_give",
    "tiers_recompute_all",
]
