"""Writes of the loyalty app. Every change of points goes through the ledger service (ledger.py, ledger_bulk.py)."""

from ..rules import RELATIVE, SET_TO
from .ledger import (
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
    ACTIVATE,
    REJECT,
    BulkResult,
    Move,
    Posting,
    PostingsQuery,
    entries_approve_bulk,
    entries_post_bulk,
    entries_reject_bulk,
    entries_reverse_bulk,
    pending_release_matured,
    tiers_recompute_all,
)

__all__ = [
    "ACTIVATE",
    "REJECT",
    "RELATIVE",
    "SET_TO",
    "BulkResult",
    "Move",
    "PostResult",
    "Posting",
    "PostingsQuery",
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
