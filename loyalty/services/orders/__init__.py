"""Orders from the store: mirror them, credit "Place an order" points when paid, follow edits, refunds and reverts.

The store tells the program about an order many times (created, paid, edited, updated, cancelled, refunded,
reopened), possibly out of order and more than once. Every call here brings the order to what its facts say, then
settles its points (settle.py), each effect keyed by the fact that caused it (loyalty/keys.py), so a fact applies
once whichever way and however often it arrives:

* **Earning** (amounts.py): a paid order of a member (guests included), not a test order, placed since the program
  started, earns for every active "Place an order" way to earn on its earnable amount (goods after discounts, without
  tax and shipping unless the program says they earn), rounded down, or the rule's fixed points; pending for the
  rule's hold days (else the program's default), counted from when the order was placed.
* **Edits**: a newer version with another earnable amount tops the earning up or takes part of it back.
* **Partial refunds**: each takes back floor(points x refunded share of the earnable amount), on the same base the
  points were earned on; never more than is left of the earnings.
* **Full revert** (cancelled, refunded, tagged, as configured): every earning is reversed once; an order that is paid
  again later (reopened) earns again, once per reopening.
* Points already spent: the program's negative-balance policy for automatic reverts decides (default: take what is
  available and record the shortfall on the earning, never more than it still owes).
"""

from .amounts import (
    OrderParts,
    earnable_amount,
    earnable_amount_sql,
    points_for_amount,
    refund_earnable_amount,
    refund_share,
    refunded_earnable_sql,
    unallocated_amount,
)
from .facts import PAID_STATUSES, REFUNDED, OrderFacts, OrderNotKnown, OrderOutcome, RefundFacts
from .ledger_state import (
    OrderLedger,
    OrderPoints,
    order_earnings,
    order_ledger,
    order_points,
    orders_not_recovered,
    shortfall_orders,
)
from .mirror import is_newer, member_for_order, order_apply, order_refunds_add, order_refunds_settle, order_settle
from .settle import SettleContext, earn_refusal, full_revert_reason, order_rule_points, settle_context

__all__ = [
    "PAID_STATUSES",
    "REFUNDED",
    "OrderFacts",
    "OrderLedger",
    "OrderNotKnown",
    "OrderOutcome",
    "OrderParts",
    "OrderPoints",
    "RefundFacts",
    "SettleContext",
    "earn_refusal",
    "earnable_amount",
    "earnable_amount_sql",
    "full_revert_reason",
    "is_newer",
    "member_for_order",
    "order_apply",
    "order_earnings",
    "order_ledger",
    "order_points",
    "order_refunds_add",
    "order_refunds_settle",
    "order_rule_points",
    "order_settle",
    "orders_not_recovered",
    "points_for_amount",
    "refund_earnable_amount",
    "refund_share",
    "refunded_earnable_sql",
    "settle_context",
    "shortfall_orders",
    "unallocated_amount",
]
