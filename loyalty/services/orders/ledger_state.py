"""An order's side of the ledger: its earnings, what took from them, and the keys its facts used.

Every read of an order's earnings goes through order_earnings() (or order_ledger(), which starts from the same
query), so the keys that name them are built in one place (loyalty/keys.py) and found the same way everywhere.
"""

from dataclasses import dataclass, field

from django.db.models import Q

from ...keys import live_keys, order_earning_key, order_id_of_earning_key
from ...models import EarnRule, EarnRuleKind, EntryKind, EntrySource, EntryStatus, LedgerEntry, Order, Shortfall


def _with_live(keys: list[str]) -> list[str]:
    """The base keys and, for facts an undo freed, the key of their next credit (loyalty.keys)."""
    return sorted(set(keys) | set(live_keys(keys).values()))


def _order_rules(rules) -> list:
    if rules is None:
        return list(EarnRule.objects.filter(kind=EarnRuleKind.ORDER).order_by("pk"))
    return list(rules)


def _order_entries(order: Order, rules) -> list[LedgerEntry]:
    """The order's entries: its first earnings by key (Reward past actions makes them under its own source) and
    every entry the order's facts posted (source "order", source_ref the order)."""
    keys = _with_live([order_earning_key(order.pk, rule.pk) for rule in _order_rules(rules)])
    # Looked up by key (the unique index) and by source (its index), never by a key prefix: a LIKE would scan the
    # whole ledger on PostgreSQL.
    wanted = Q(source=EntrySource.ORDER, source_ref=order.pk)
    if keys:
        wanted |= Q(idempotency_key__in=keys)
    return list(LedgerEntry.objects.filter(wanted).order_by("pk"))


def order_earnings(order: Order, *, rules=None) -> list[LedgerEntry]:
    """Every earning entry of the order, oldest first: the first earning per way to earn (whichever path credited
    it), the earnings of its reopenings, and the top-ups of its edits."""
    return [entry for entry in _order_entries(order, rules) if entry.kind == EntryKind.EARN]


@dataclass
class OrderLedger:
    """What settling an order needs to know of the ledger, read once."""

    earnings: list[LedgerEntry] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)  # idempotency keys the order's facts used (entries and shortfalls)
    reversed_ids: set[int] = field(default_factory=set)  # earnings reversed (by a revert or by staff)

    def is_live(self, entry: LedgerEntry) -> bool:
        """An earning that still holds points: not rejected, not reversed."""
        return entry.status != EntryStatus.REJECTED and entry.pk not in self.reversed_ids

    def of_rule(self, rule_id: int) -> list[LedgerEntry]:
        return [entry for entry in self.earnings if entry.earn_rule_id == rule_id]

    def add(self, entries) -> None:
        for entry in entries:
            self.earnings.append(entry)
            if entry.idempotency_key:
                self.keys.add(entry.idempotency_key)


def order_ledger(order: Order, rules=None) -> OrderLedger:
    """The order's earnings with the keys already used and the earnings already reversed (three queries at most)."""
    entries = _order_entries(order, rules)
    state = OrderLedger(
        earnings=[entry for entry in entries if entry.kind == EntryKind.EARN],
        keys={entry.idempotency_key for entry in entries if entry.idempotency_key},
        reversed_ids={entry.reverses_id for entry in entries if entry.reverses_id},
    )
    ids = [entry.pk for entry in state.earnings]
    if ids:
        # A staff reversal has its own source; a shortfall that took nothing stands in for its reversal or take-back.
        state.reversed_ids.update(LedgerEntry.objects.filter(reverses_id__in=ids).values_list("reverses_id", flat=True))
        for key, reversal_of in Shortfall.objects.filter(entry_id__in=ids).values_list(
            "idempotency_key", "reversal_of_id"
        ):
            if key:
                state.keys.add(key)
            if reversal_of:
                state.reversed_ids.add(reversal_of)
    return state


# ---------------------------------------------------------------------------------------------------------------
# Reads for the admin: what an order earned, what was taken back, what could not be


@dataclass
class OrderPoints:
    earned: int = 0
    pending: int = 0
    taken_back: int = 0
    not_taken: int = 0
    entries: list[LedgerEntry] = field(default_factory=list)
    shortfalls: list[Shortfall] = field(default_factory=list)

    @property
    def kept(self) -> int:
        """Points the member holds from the order, pending ones included (earned less taken back)."""
        return self.earned - self.taken_back


def order_points(order: Order) -> OrderPoints:
    """The order's earnings, their reversals and take-backs, and the shortfalls recorded against them."""
    earnings = order_earnings(order)
    ids = [entry.pk for entry in earnings]
    entries = list(
        LedgerEntry.objects.filter(
            Q(pk__in=ids)
            | Q(reverses_id__in=ids)
            | Q(takes_back_id__in=ids)
            | Q(source=EntrySource.ORDER, source_ref=order.pk)
        )
        .select_related("actor_user")
        .order_by("created_at", "pk")
    )
    summary = OrderPoints(entries=entries)
    summary.shortfalls = list(Shortfall.objects.filter(entry_id__in=ids).order_by("created_at", "pk"))
    for entry in entries:
        if entry.kind == EntryKind.EARN:
            summary.earned += entry.points
            if entry.status == EntryStatus.REJECTED:
                summary.taken_back += entry.points
            elif entry.status == EntryStatus.PENDING:
                summary.pending += entry.points
        elif entry.status != EntryStatus.REJECTED:
            summary.taken_back -= entry.points
    summary.not_taken = sum(s.points for s in summary.shortfalls)
    return summary


def orders_not_recovered(orders) -> dict[int, int]:
    """For a page of orders: order id -> points recorded as not recovered from its earnings (shortfalls). Three
    queries whatever the page's size."""
    orders = list(orders)
    if not orders:
        return {}
    rules = _order_rules(None)
    ids = [order.pk for order in orders]
    keys = _with_live([order_earning_key(order_id, rule.pk) for order_id in ids for rule in rules])
    wanted = Q(source=EntrySource.ORDER, source_ref__in=ids) | Q(idempotency_key__in=keys)
    earnings = LedgerEntry.objects.filter(wanted, kind=EntryKind.EARN).values_list(
        "pk", "source", "source_ref", "idempotency_key"
    )
    order_of = {}
    for entry_id, source, source_ref, key in earnings:
        order_of[entry_id] = source_ref if source == EntrySource.ORDER else order_id_of_earning_key(key)
    totals = dict.fromkeys(ids, 0)
    for entry_id, points in Shortfall.objects.filter(entry_id__in=list(order_of)).values_list("entry_id", "points"):
        if order_of[entry_id] in totals:
            totals[order_of[entry_id]] += points
    return totals


def shortfall_orders(shortfalls) -> dict[int, int]:
    """For a page of shortfalls: shortfall id -> the order whose earning it was recorded against (when one was)."""
    shortfalls = [s for s in shortfalls if s.entry_id]
    found = {}
    for shortfall in shortfalls:
        entry = shortfall.entry
        if entry.kind != EntryKind.EARN:
            continue
        order_id = (
            entry.source_ref if entry.source == EntrySource.ORDER else order_id_of_earning_key(entry.idempotency_key)
        )
        if order_id:
            found[shortfall.pk] = order_id
    return found
