"""Mirroring the store's orders: create or update the order row, find its member, record its refunds, then settle.

Like the other writes here they join a caller's transaction without a savepoint: a failure fails the caller's whole
unit of work (a webhook event), which is retried as one.
"""

from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q

from ...models import Member, Order, OrderRefund
from ..members import member_create
from .amounts import OrderParts
from .facts import REFUNDED, OrderFacts, OrderNotKnown, OrderOutcome, RefundFacts
from .settle import SettleContext, settle, settle_context, settle_refunds

ZERO = Decimal(0)


def order_apply(*, facts: OrderFacts, actor, context: SettleContext | None = None) -> OrderOutcome:
    """Mirror the order (a stale update never overwrites a newer one), record its refunds, settle its points.

    `context` lets a batch of events share one read of the program's settings and ways to earn.
    """
    context = context or settle_context()
    with transaction.atomic(savepoint=False):
        order, created = _order_locked(facts, context)
        previous = None
        if not created and is_newer(facts, order):
            before = OrderParts.of(order)
            _copy_facts(order, facts)
            order.save()
            if OrderParts.of(order) != before:
                previous = before  # a new version of the order: its earning follows the new amount
        outcome = OrderOutcome(order=order, created=created)
        # A new order looked its member up as it was created: asking again would find the same nobody.
        if not created and not order.member_id and (member := member_for_order(facts, context)):
            order.member = member
            order.save(update_fields=["member"])
        refunds = _add_refunds(order, facts.refunds, new=created)
        # A new order's refunds are the ones just added: no need to read them back.
        settle(
            order,
            outcome,
            actor=actor,
            context=context,
            new=created,
            refunds=refunds if created else None,
            previous=previous,
        )
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
        settle(order, outcome, actor=actor, context=context)
        return outcome


def order_refunds_settle(*, order: Order | int, actor, context: SettleContext | None = None) -> OrderOutcome:
    """Take back what the order's recorded refunds returned from its earnings (each refund once, as on the live
    path): for a credit made by hand on the order's whole earnable amount (New conversions)."""
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic(savepoint=False):
        locked = Order.objects.select_for_update().get(pk=order_id)
        outcome = OrderOutcome(order=locked)
        settle_refunds(locked, outcome, actor=actor, context=context)
        return outcome


def order_settle(*, order: Order | int, actor, context: SettleContext | None = None) -> OrderOutcome:
    """Settle an order's points with today's rules and settings (earn what is due, revert what must go)."""
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic(savepoint=False):
        locked = Order.objects.select_for_update().get(pk=order_id)
        outcome = OrderOutcome(order=locked)
        settle(locked, outcome, actor=actor, context=context)
        return outcome


# ---------------------------------------------------------------------------------------------------------------
# The shopper


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


# ---------------------------------------------------------------------------------------------------------------
# The order row


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
        "tax_amount": facts.tax_amount,
        "shipping_amount": facts.shipping_amount,
        "shipping_tax_amount": facts.shipping_tax_amount,
        "prices_include_tax": facts.prices_include_tax,
        "currency": (facts.currency or "USD")[:3].upper(),
        "financial_status": facts.financial_status[:40],
        "cancelled": facts.cancelled,
        "tags": facts.tags[:1000],
        "placed_at": facts.placed_at,
        "updated_at": facts.updated_at or facts.placed_at,
        "test": facts.test,
    }


def progress(financial_status: str, cancelled: bool) -> int:
    """How far along an order's life a state is: unpaid, paid, partly refunded, refunded, cancelled."""
    if cancelled:
        return 4
    return {"paid": 1, "partially_refunded": 2, REFUNDED: 3}.get(financial_status, 0)


def is_newer(facts: OrderFacts, order: Order) -> bool:
    """Whether the description replaces the stored one. Events arrive out of order: only one at least as recent does.

    Stores stamp an order's last change to the second, so two states can share a stamp (WooCommerce's order.created
    while pending and its order.updated once paid, in the same second): then the state further along wins, whichever
    arrives first, and of two equally far along, the later arrival.
    """
    if facts.updated_at is None or order.updated_at is None:
        return True
    if facts.updated_at != order.updated_at:
        return facts.updated_at > order.updated_at
    return progress(facts.financial_status, facts.cancelled) >= progress(order.financial_status, order.cancelled)


AMOUNT_FIELDS = ("total", "earnable_amount", "tax_amount", "shipping_amount", "shipping_tax_amount")


def _copy_facts(order: Order, facts: OrderFacts) -> None:
    for name, value in _order_fields(facts).items():
        if name in AMOUNT_FIELDS and not facts.amounts_describe_order:
            continue
        setattr(order, name, value)


# ---------------------------------------------------------------------------------------------------------------
# Refunds


def _add_refunds(order: Order, refunds: list[RefundFacts], *, new: bool = False) -> list[OrderRefund]:
    """Record the refunds not recorded yet; returns the new ones."""
    added = []
    if not refunds:
        return added
    known = set() if new else set(order.refunds.values_list("store_refund_id", flat=True))
    for refund in refunds:
        if refund.store_refund_id in known or (refund.amount <= 0 and not refund.has_parts):
            continue
        added.append(OrderRefund.objects.create(order=order, **refund_fields(refund, order)))
        known.add(refund.store_refund_id)
    return added


def refund_fields(refund: RefundFacts, order: Order) -> dict:
    """The refund as recorded: its goods without tax (the order tells whether the store's figure held it)."""
    goods = refund.goods
    if refund.goods_include_tax and order.prices_include_tax:
        goods -= refund.goods_tax
    return {
        "store_refund_id": refund.store_refund_id[:64],
        "amount": max(refund.amount, ZERO),
        "goods_amount": max(goods, ZERO),
        "tax_amount": max(refund.goods_tax, ZERO),
        "shipping_amount": max(refund.shipping, ZERO),
        "shipping_tax_amount": max(refund.shipping_tax, ZERO),
        **({"created_at": refund.created_at} if refund.created_at else {}),
    }
