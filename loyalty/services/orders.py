"""Orders from the store: mirror them, credit "Place an order" points when paid, take points back when they go away.

The store tells the program about an order many times (created, paid, updated, cancelled, refunded), possibly out of
order and more than once. Every call here brings the order to what its facts say, then settles its points:

* **Earning**: a paid order of a member (guests included), not a test order, placed since the program started, earns
  for every active "Place an order" way to earn: points per currency unit of the earnable amount (rounded down), or the
  rule's fixed points. Pending for the rule's hold days (else the program's default), counted from when the order was
  placed. Keyed f"order:{order.pk}:rule:{rule.pk}": credited once, however often the store re-sends it.
* **Full revert** (reverts on, and the order cancelled, refunded or tagged as configured): every earning of the order
  is reversed once (pending -> rejected, active -> a reversal), keyed f"revert:order:{order.pk}:rule:{rule.pk}".
  An order that meets a full revert before it earned anything never earns.
* **Partial refunds** (reverts on for partial refunds): each refund takes back the refunded share of each earning,
  floor(points * refunded amount / earnable amount), keyed by the refund; the ledger never takes back more than was
  earned in all.
* Points already spent: the program's negative-balance policy for automatic reverts decides (default: take what is
  available and record the shortfall on the earning).
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q

from ..errors import LoyaltyError
from ..models import (
    EarnRule,
    EarnRuleKind,
    EntryKind,
    EntrySource,
    EntryStatus,
    LedgerEntry,
    Member,
    Order,
    OrderRefund,
    ProgramSettings,
    Shortfall,
)
from .ledger import entry_is_reversed, entry_reverse, entry_take_back, points_earn
from .members import member_create

log = logging.getLogger(__name__)

# Financial statuses (Shopify's words; WooCommerce statuses are mapped onto them) of an order that was paid.
PAID_STATUSES = frozenset({"paid", "partially_refunded", "refunded"})
REFUNDED = "refunded"


class OrderNotKnown(LoyaltyError):
    """A fact about an order that has not arrived yet (a refund before its order); retried later."""


@dataclass
class RefundFacts:
    store_refund_id: str
    amount: Decimal
    created_at: datetime | None = None


@dataclass
class OrderFacts:
    """An order as the store describes it, parsed from a webhook payload or a CSV row."""

    store: str
    store_order_id: str
    total: Decimal
    placed_at: datetime
    order_number: str = ""
    email: str = ""
    customer_id: str = ""
    first_name: str = ""
    last_name: str = ""
    earnable_amount: Decimal | None = None
    currency: str = "USD"
    financial_status: str = ""
    cancelled: bool = False
    tags: str = ""
    test: bool = False
    updated_at: datetime | None = None
    refunds: list[RefundFacts] = field(default_factory=list)


@dataclass
class OrderOutcome:
    """What one call did to an order, in a support agent's words."""

    order: Order
    created: bool = False
    notes: list[str] = field(default_factory=list)

    def __str__(self):
        return "; ".join(self.notes) or "nothing to change"


@dataclass
class SettleContext:
    """What settling an order reads that is the same for every order: loaded once for a batch of webhook events."""

    program: ProgramSettings
    rules: list[EarnRule]
    # The caller runs each order in its own savepoint and takes a conflict (IntegrityError: another worker created the
    # same order or shopper a moment ago) as a reason to run it again; the savepoints inside are then left out.
    in_savepoint: bool = False


def settle_context(*, in_savepoint: bool = False) -> SettleContext:
    """The program's settings and its "Place an order" ways to earn, as they are now."""
    rules = list(EarnRule.objects.filter(kind=EarnRuleKind.ORDER).order_by("pk"))
    return SettleContext(program=ProgramSettings.load(), rules=rules, in_savepoint=in_savepoint)


# ---------------------------------------------------------------------------------------------------------------
# Writes


def order_apply(*, facts: OrderFacts, actor, context: SettleContext | None = None) -> OrderOutcome:
    """Mirror the order (a stale update never overwrites a newer one), record its refunds, settle its points.

    Like the other writes here it joins a caller's transaction without a savepoint: a failure fails the caller's whole
    unit of work (a webhook event), which is retried as one. `context` lets a batch of events share one read of the
    program's settings and ways to earn.
    """
    context = context or settle_context()
    with transaction.atomic(savepoint=False):
        order, created = _order_locked(facts, context)
        if not created and _is_newer(facts, order):
            _copy_facts(order, facts)
            order.save()
        outcome = OrderOutcome(order=order, created=created)
        # A new order looked its member up as it was created: asking again would find the same nobody.
        if not created and not order.member_id and (member := member_for_order(facts, context)):
            order.member = member
            order.save(update_fields=["member"])
        refunds = _add_refunds(order, facts.refunds, new=created)
        # A new order's refunds are the ones just added: no need to read them back.
        _settle(order, outcome, actor=actor, context=context, new=created, refunds=refunds if created else None)
        return outcome


def order_refunds_add(
    *, store: str, store_order_id: str, refunds: list[RefundFacts], actor, context: SettleContext | None = None
) -> OrderOutcome:
    """Record refunds of a known order and settle its points; OrderNotKnown when the order has not arrived yet."""
    with transaction.atomic(savepoint=False):
        order = Order.objects.select_for_update().filter(store=store, store_order_id=store_order_id).first()
        if order is None:
            raise OrderNotKnown(f"Order {store_order_id} has not arrived yet; the refund is retried when it does.")
        outcome = OrderOutcome(order=order)
        _add_refunds(order, refunds)
        _settle(order, outcome, actor=actor, context=context)
        return outcome


def order_settle(*, order: Order | int, actor, context: SettleContext | None = None) -> OrderOutcome:
    """Settle an order's points with today's rules and settings (earn what is due, revert what must go)."""
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic(savepoint=False):
        locked = Order.objects.select_for_update().get(pk=order_id)
        outcome = OrderOutcome(order=locked)
        _settle(locked, outcome, actor=actor, context=context)
        return outcome


def member_for_order(facts: OrderFacts, context: SettleContext | None = None) -> Member | None:
    """The member by store customer id, then by email; a new guest (no sign-up) when the store's customer is unknown."""
    email = (facts.email or "").strip().lower()
    if not facts.customer_id and not email:
        return None
    # One query for both ways of finding the shopper (each is unique, so at most two rows come back). A batch locks
    # the row now: the earning that follows locks it anyway, and can then use this fresh copy (one query fewer).
    wanted = (Q(customer_id=facts.customer_id) if facts.customer_id else Q()) | (Q(email=email) if email else Q())
    members = Member.objects.select_for_update() if context and context.in_savepoint else Member.objects
    found = list(members.filter(wanted))
    if facts.customer_id and (member := next((m for m in found if m.customer_id == facts.customer_id), None)):
        return member
    if not email:
        return None
    if member := next((m for m in found if m.email == email), None):
        if facts.customer_id and not member.customer_id:
            _claim_customer_id(member, facts.customer_id)
        return member
    # Nobody holds the customer id (else it would have been found above), so the guest can take it.
    return _guest_create(facts, email, context)


def _guest_create(facts: OrderFacts, email: str, context: SettleContext | None) -> Member:
    if context and context.in_savepoint:
        return _member_create(facts, email, customer_id=facts.customer_id or None, savepoint=False)
    try:
        return _member_create(facts, email, customer_id=facts.customer_id or None)
    except IntegrityError:
        # Another event of the same shopper created the member a moment ago, or another shopper took the customer id.
        if member := Member.objects.filter(email=email).first():
            return member
        return _member_create(facts, email, customer_id=None)


def _member_create(facts: OrderFacts, email: str, *, customer_id: str | None, savepoint: bool = True) -> Member:
    with transaction.atomic(savepoint=savepoint):
        return member_create(
            email=email, customer_id=customer_id, first_name=facts.first_name, last_name=facts.last_name
        )


def _claim_customer_id(member: Member, customer_id: str) -> None:
    # The caller found nobody holding the id; a shopper claiming it meanwhile makes the UPDATE fail, and it is skipped.
    try:
        with transaction.atomic():
            if Member.objects.filter(pk=member.pk, customer_id__isnull=True).update(customer_id=customer_id):
                member.customer_id = customer_id  # the copy stays as fresh as the row
    except IntegrityError:
        pass


def _order_locked(facts: OrderFacts, context: SettleContext) -> tuple[Order, bool]:
    """The order row, created from the facts when new, locked for the rest of the transaction.

    Two events of one order (created and paid arrive together) queue on this lock, so they settle one after the other.
    """
    orders = Order.objects.select_for_update()
    if order := orders.filter(store=facts.store, store_order_id=facts.store_order_id).first():
        return order, False
    fields = {**_order_fields(facts), "member": member_for_order(facts, context)}
    try:
        with transaction.atomic(savepoint=not context.in_savepoint):
            return Order.objects.create(store=facts.store, store_order_id=facts.store_order_id, **fields), True
    except IntegrityError:
        # Another event of the same order created it a moment ago.
        return orders.get(store=facts.store, store_order_id=facts.store_order_id), False


def _order_fields(facts: OrderFacts) -> dict:
    return {
        "order_number": facts.order_number[:64],
        "email": (facts.email or "").strip().lower()[:254],
        "customer_id": facts.customer_id[:64],
        "total": facts.total,
        "earnable_amount": facts.earnable_amount,
        "currency": (facts.currency or "USD")[:3].upper(),
        "financial_status": facts.financial_status[:40],
        "cancelled": facts.cancelled,
        "tags": facts.tags[:1000],
        "placed_at": facts.placed_at,
        "updated_at": facts.updated_at or facts.placed_at,
        "test": facts.test,
    }


def _is_newer(facts: OrderFacts, order: Order) -> bool:
    # Events can arrive out of order: only a description at least as recent as the stored one replaces it.
    return facts.updated_at is None or order.updated_at is None or facts.updated_at >= order.updated_at


def _copy_facts(order: Order, facts: OrderFacts) -> None:
    for name, value in _order_fields(facts).items():
        setattr(order, name, value)


def _add_refunds(order: Order, refunds: list[RefundFacts], *, new: bool = False) -> list[OrderRefund]:
    """Record the refunds not recorded yet; returns the new ones."""
    added = []
    if not refunds:
        return added
    known = set() if new else set(order.refunds.values_list("store_refund_id", flat=True))
    for refund in refunds:
        if refund.store_refund_id in known or refund.amount <= 0:
            continue
        added.append(
            OrderRefund.objects.create(
                order=order,
                store_refund_id=refund.store_refund_id[:64],
                amount=refund.amount,
                **({"created_at": refund.created_at} if refund.created_at else {}),
            )
        )
        known.add(refund.store_refund_id)
    return added


# ---------------------------------------------------------------------------------------------------------------
# Settling an order's points


def _settle(order: Order, outcome: OrderOutcome, *, actor, context=None, new=False, refunds=None) -> None:
    """Earn what is due and revert what must go. `new`: the order was created in this transaction; `refunds`: all of
    its refunds, when the caller has them at hand."""
    context = context or settle_context()
    program, rules = context.program, context.rules
    # An order created a moment ago has no earnings yet (their keys name its new primary key).
    earnings = [] if new else order_earnings(order, rules=rules)
    full_revert = full_revert_reason(order, program)
    if not full_revert:
        earnings += _earn(order, earnings, context, outcome, actor=actor, new=new)
    if not earnings:
        return
    if full_revert:
        _revert_all(order, earnings, outcome, program, reason=full_revert, actor=actor)
    elif program.revert_enabled and program.revert_on_partially_refunded:
        _take_back_refunds(order, earnings, outcome, program, actor=actor, refunds=refunds)


def full_revert_reason(order: Order, program: ProgramSettings) -> str:
    """Why the order's points must all go back ("" when they stay), following the program's revert settings."""
    if not program.revert_enabled:
        return ""
    if order.cancelled and program.revert_on_cancelled:
        return "cancelled"
    if order.financial_status == REFUNDED and program.revert_on_refunded:
        return "refunded"
    tagged = sorted(set(order.tag_list()) & set(program.revert_tag_list()))
    if tagged:
        return f"tagged {', '.join(tagged)}"
    return ""


def earn_refusal(order: Order, program: ProgramSettings) -> str:
    """Why the order earns nothing ("" when it earns)."""
    if order.test:
        return "a test order earns nothing"
    if not order.member_id:
        return "no customer email: nobody to credit"
    if order.financial_status not in PAID_STATUSES:
        return f"not paid yet ({order.financial_status or 'no financial status'})"
    if order.placed_at < program.program_started_at:
        return "placed before the program started (Reward past actions credits it)"
    return ""


def order_rule_points(rule: EarnRule, order: Order) -> int:
    """Points a "Place an order" way to earn gives: per currency unit of the earnable amount, else its fixed points."""
    if rule.points_per_currency_unit:
        amount = order.earnable_amount if order.earnable_amount is not None else order.total
        return int((max(amount, Decimal(0)) * rule.points_per_currency_unit).to_integral_value(ROUND_FLOOR))
    return rule.points


def _earn(order, earnings, context, outcome, *, actor, new=False) -> list[LedgerEntry]:
    """Credit every active way to earn that has not credited this order yet; returns the new earnings."""
    program = context.program
    if refusal := earn_refusal(order, program):
        if not earnings:
            outcome.notes.append(refusal)
        return []
    credited = {entry.earn_rule_id for entry in earnings}
    # A batch's new order holds its member locked and fresh (found with FOR UPDATE, or just created).
    member_locked = new and context.in_savepoint
    posted = []
    for rule in context.rules:
        points = order_rule_points(rule, order)
        if not rule.active or rule.pk in credited or points <= 0:
            continue
        hold_days = rule.hold_days if rule.hold_days is not None else program.hold_days_default
        result = points_earn(
            member=order.member if member_locked else order.member_id,
            points=points,
            reason=f"{rule.name}: order {order}",
            actor=actor,
            source=EntrySource.ORDER,
            source_ref=order.pk,
            earn_rule=rule,
            idempotency_key=earning_key(order, rule.pk),
            hold_until=order.placed_at + timedelta(days=hold_days) if hold_days else None,
            savepoint=not context.in_savepoint,
            key_is_new=new,  # the key names the order's new primary key
            member_locked=member_locked,
        )
        if result.posted:
            outcome.notes.append(f"earned {points:+,} ({result.entry.get_status_display().lower()})")
            posted.append(result.entry)
    return posted


def earning_key(order: Order, rule_id: int) -> str:
    return f"order:{order.pk}:rule:{rule_id}"


def order_earnings(order: Order, *, rules=None) -> list[LedgerEntry]:
    """The order's earnings, one per way to earn (the webhook's and Reward past actions' share the key)."""
    if rules is None:
        rules = EarnRule.objects.filter(kind=EarnRuleKind.ORDER)
    keys = [earning_key(order, rule.pk) for rule in rules]
    # Looked up by key (the unique index), not by prefix: a LIKE would scan the whole ledger on PostgreSQL.
    return list(LedgerEntry.objects.filter(kind=EntryKind.EARN, idempotency_key__in=keys).order_by("pk"))


def _revert_all(order, earnings, outcome, program, *, reason, actor) -> None:
    for entry in earnings:
        if entry.status == EntryStatus.REJECTED or entry_is_reversed(entry):
            continue
        try:
            result = entry_reverse(
                entry=entry,
                reason=f"Order {order} {reason}",
                actor=actor,
                policy=program.revert_negative_balance_policy,
                source=EntrySource.ORDER,
                source_ref=order.pk,
                idempotency_key=f"revert:order:{order.pk}:rule:{entry.earn_rule_id}",
            )
        except LoyaltyError as exc:
            # Taken back in full by partial refunds already: nothing is left to revert.
            log.info("order %s: %s", order.pk, exc)
            continue
        if result.already_applied:
            continue
        outcome.notes.append(_revert_note(result, reason))


def _revert_note(result, reason) -> str:
    if result.entry is not None and result.entry.kind == EntryKind.EARN:
        return f"{reason}: pending {result.entry.points:+,} rejected"
    note = f"{reason}: took back {-(result.entry.points if result.entry else 0):,}"
    if result.shortfall:
        note += f" ({result.shortfall:,} already spent, recorded as a shortfall)"
    return note


def refund_share(points: int, refunded: Decimal, earnable: Decimal | None) -> int:
    """The refunded share of an earning's points, rounded down: floor(points * refunded / earnable)."""
    if not earnable or earnable <= 0:
        return points
    share = Decimal(points) * min(refunded, earnable) / earnable
    return int(share.to_integral_value(ROUND_FLOOR))


def _take_back_refunds(order, earnings, outcome, program, *, actor, refunds=None) -> None:
    if refunds is None:
        refunds = list(order.refunds.order_by("created_at", "pk"))
    else:
        refunds = sorted(refunds, key=lambda refund: (refund.created_at, refund.pk))
    for refund in refunds:
        for entry in earnings:
            points = refund_share(entry.points, refund.amount, order.earnable_amount)
            if points <= 0:
                continue
            result = entry_take_back(
                entry=entry,
                points=points,
                reason=f"Order {order}: refund of {refund.amount} {order.currency}",
                actor=actor,
                policy=program.revert_negative_balance_policy,
                source=EntrySource.ORDER,
                source_ref=order.pk,
                idempotency_key=f"takeback:order:{order.pk}:refund:{refund.pk}:rule:{entry.earn_rule_id}",
            )
            if result.already_applied or (result.entry is None and not result.shortfall):
                continue
            taken = -result.entry.points if result.entry else 0
            note = f"refund {refund.store_refund_id}: took back {taken:,}"
            if result.shortfall:
                note += f" ({result.shortfall:,} already spent, recorded as a shortfall)"
            outcome.notes.append(note)


# ---------------------------------------------------------------------------------------------------------------
# Reads for the admin: what an order earned and what was taken back


@dataclass
class OrderPoints:
    earned: int = 0
    pending: int = 0
    taken_back: int = 0
    not_taken: int = 0
    entries: list[LedgerEntry] = field(default_factory=list)
    shortfalls: list[Shortfall] = field(default_factory=list)


def order_points(order: Order) -> OrderPoints:
    """The order's earnings, their reversals and take-backs, and the shortfalls recorded against them."""
    earnings = order_earnings(order)
    ids = [e.pk for e in earnings]
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
