"""A model of what a member must hold, checked against sequences of real Shopify and WooCommerce deliveries.

hypothesis generates stories for one shopper with orders in both stores: created, paid, edited up and down, partial
refunds of goods, tax, shipping or money alone, cancelled, reopened (WooCommerce), refunded in full, two states in one
second, duplicate deliveries and deliveries held back and delivered late, points spent in between. Every delivery
goes through the signed endpoint and the drain, as the stores send them (payloads built from the fixtures).

The reference model below knows the program's rules, written out on their own (exact fractions, no code of the
service): what earns (goods, and tax and shipping where the program says), floor(points x refunded share), edits
brought to the new amount, a full revert once, an earning again per reopening, and points already spent: take what
is available, record the rest as not recovered, never more than an earning still owes. After every step the member's
points equal the model's, each order's shortfall equals the model's and never exceeds what its earnings owed, and
reconcile_ledger is clean.
"""

import math
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from loyalty.actors import SystemActor
from loyalty.models import EntryKind, EntryStatus, LedgerEntry, Member, Order, ProgramSettings, Shortfall
from loyalty.selectors import ledger_differences
from loyalty.services import points_adjust
from loyalty.services.orders import orders_not_recovered
from webhooks.models import EventStatus, WebhookEvent

from .payloads import Refund, shopify_order, shopify_refund, woo_order

pytestmark = pytest.mark.django_db(transaction=False)
EMAIL = "model.shopper@shopper.example"
PAID = {"paid", "partially_refunded", "refunded"}
SPENDER = SystemActor("model test: the member spends points")


def fr(value) -> Fraction:
    return Fraction(str(value))


# ---------------------------------------------------------------------------------------------------------------
# The store's side: what each order is, as the store would send it


@dataclass
class StoreOrder:
    store: str
    order_id: int
    placed_at: object
    goods: Decimal
    tax: Decimal
    shipping: Decimal
    placed_as: tuple
    state: str = "pending"  # pending, paid, cancelled, refunded
    was_paid: bool = False
    refunds: list[Refund] = field(default_factory=list)
    woo_status: str = "processing"

    def refunded(self, part: str) -> Decimal:
        return sum((getattr(r, part) for r in self.refunds), Decimal(0))


# ---------------------------------------------------------------------------------------------------------------
# The reference model: what the program must know of each order, and what the member must hold


@dataclass
class ModelRefund:
    refund_id: str
    sort_key: tuple
    money: Fraction
    goods: Fraction
    tax: Fraction
    shipping: Fraction


@dataclass
class ModelFacts:
    ts: object
    financial: str
    cancelled: bool
    parts: tuple  # (goods, tax, shipping, total)
    parts_describe_order: bool
    refunds: list


@dataclass
class Known:
    facts: ModelFacts
    parts: tuple
    refunds: list = field(default_factory=list)
    reopenings: int = 0
    reverted: bool = False
    credited: bool = False
    owed: int = 0
    applied: set = field(default_factory=set)
    shortfall: int = 0


def progress(financial: str, cancelled: bool) -> int:
    if cancelled:
        return 4
    return {"paid": 1, "partially_refunded": 2, "refunded": 3}.get(financial, 0)


class Model:
    def __init__(self, earn_on_tax: bool, earn_on_shipping: bool, seen: Counter):
        self.tax, self.shipping, self.seen = earn_on_tax, earn_on_shipping, seen
        self.available = 0
        self.orders: dict[tuple, Known] = {}
        self.recorded = 0  # how many refunds the program recorded (their order, where the store gives no date)

    def earnable(self, parts) -> Fraction:
        goods, tax, shipping, _total = parts
        return max(goods + (tax if self.tax else 0) + (shipping if self.shipping else 0), Fraction(0))

    def refunded_part(self, refund: ModelRefund, parts) -> Fraction:
        earnable, total = self.earnable(parts), parts[3]
        part = refund.goods + (refund.tax if self.tax else 0) + (refund.shipping if self.shipping else 0)
        beyond = max(refund.money - refund.goods - refund.tax - refund.shipping, Fraction(0))
        if beyond and total > 0:
            part += beyond * earnable / total
        return min(max(part, Fraction(0)), earnable)

    def take(self, known: Known, want: int) -> int:
        """Take up to `want` from what the order's earnings still owe; what the member spent is not recovered."""
        want = min(want, known.owed)
        taken = min(want, max(self.available, 0))
        self.available -= taken
        known.owed -= want
        known.shortfall += want - taken
        if want > taken:
            self.seen["shortfall recorded"] += 1
        return want

    def deliver(self, key, facts: ModelFacts | None, refunds: list[ModelRefund]) -> None:
        known = self.orders.get(key)
        previous = None
        if facts is not None and known is None:
            known = self.orders[key] = Known(facts=facts, parts=facts.parts)
            new = True
        else:
            new = False
            if facts is not None and not self.newer(facts, known.facts):
                self.seen["older state arrived late"] += 1
            if facts is not None and self.newer(facts, known.facts):
                before = known.parts
                known.facts = facts
                if facts.parts_describe_order:
                    known.parts = facts.parts
                if known.parts != before:
                    previous = before
        seen = {r.refund_id for r in known.refunds}
        for refund in refunds:
            if refund.refund_id not in seen and (refund.money > 0 or refund.goods or refund.tax or refund.shipping):
                self.recorded += 1
                known.refunds.append(refund)
                seen.add(refund.refund_id)
        self.settle(known, previous, new)

    @staticmethod
    def newer(facts: ModelFacts, known: ModelFacts) -> bool:
        if facts.ts != known.ts:
            return facts.ts > known.ts
        return progress(facts.financial, facts.cancelled) >= progress(known.financial, known.cancelled)

    def settle(self, known: Known, previous, new: bool) -> None:
        facts = known.facts
        if facts.cancelled or facts.financial == "refunded":
            if known.owed > 0:
                self.take(known, known.owed)
                known.reverted = True
                self.seen["full revert"] += 1
            return
        paid = facts.financial in PAID
        if not paid and not known.credited:
            return
        if known.reverted and paid:
            self.seen["reopened"] += 1
            known.reopenings += 1
            known.reverted = known.credited = False
            known.applied = set()
        earnable = self.earnable(known.parts)
        if previous is not None and known.credited and not known.reverted:
            change = math.floor(earnable) - math.floor(self.earnable(previous))
            if change > 0:
                self.available += change
                known.owed += change
                self.seen["edited up"] += 1
            elif change < 0:
                self.take(known, -change)
                self.seen["edited down"] += 1
        if paid and not known.credited and math.floor(earnable) > 0:
            self.available += math.floor(earnable)
            known.owed += math.floor(earnable)
            known.credited = True
        if not known.credited or known.reverted:
            return
        points = math.floor(earnable)
        for refund in sorted(known.refunds, key=lambda r: r.sort_key):
            if refund.refund_id in known.applied or earnable <= 0:
                continue
            share = math.floor(points * self.refunded_part(refund, known.parts) / earnable)
            if share > 0 and min(share, known.owed) > 0:
                self.take(known, share)
                known.applied.add(refund.refund_id)
                self.seen["refund took back"] += 1


# ---------------------------------------------------------------------------------------------------------------
# The machine


class OrderStories(RuleBasedStateMachine):
    """Stories of one shopper's orders; `client`, `store` and `program` are set by the test below."""

    store = program = None
    seen = Counter()  # what the stories did, over all examples: the test checks they did something of each kind

    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()  # each story starts from the test's database and is rolled back after
        self.clock = timezone.now().replace(microsecond=0) - timedelta(hours=3)
        self.truth: dict[tuple, StoreOrder] = {}
        self.sent: list[tuple] = []  # deliveries made: (send, topic, payload, webhook id)
        self.held: list[tuple] = []  # deliveries held back: (key, send, topic, payload, facts, refunds)
        self.next_id = 1
        self.model = None

    def teardown(self):
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def tick(self, seconds=1):
        self.clock += timedelta(seconds=seconds)
        return self.clock

    @initialize(earn_on_tax=st.booleans(), earn_on_shipping=st.booleans())
    def configure(self, earn_on_tax, earn_on_shipping):
        ProgramSettings.objects.filter(pk=1).update(earn_on_tax=earn_on_tax, earn_on_shipping=earn_on_shipping)
        self.model = Model(earn_on_tax, earn_on_shipping, self.seen)

    # -- building deliveries -------------------------------------------------------------------------------

    def payload_of(self, order: StoreOrder, ts):
        """The order's payload now, with the facts the program must read from it."""
        refunds = tuple(order.refunds)
        if order.store == "shopify":
            financial = {"pending": "pending", "refunded": "refunded"}.get(order.state)
            if financial is None:
                financial = "partially_refunded" if refunds else "paid"
            payload = shopify_order(
                order.order_id,
                goods=order.goods,
                tax=order.tax,
                shipping=order.shipping,
                placed_at=order.placed_at,
                updated_at=ts,
                financial_status=financial,
                cancelled=order.state == "cancelled",
                refunds=refunds,
                placed_as=order.placed_as,
                email=EMAIL,
            )
            cancelled = order.state == "cancelled"
            parts = (fr(order.goods), fr(order.tax), fr(order.shipping), fr(order.goods + order.tax + order.shipping))
            placed = [fr(v) for v in order.placed_as]
            facts = ModelFacts(
                ts=ts,
                financial=financial,
                cancelled=cancelled,
                parts=(*placed, sum(placed)) if cancelled else parts,
                parts_describe_order=not cancelled,
                refunds=[self.model_refund(order, r) for r in refunds],
            )
            return payload, facts
        status = {"pending": "pending", "cancelled": "cancelled", "refunded": "refunded"}.get(order.state)
        status = status or order.woo_status
        payload = woo_order(
            order.order_id,
            goods=order.goods,
            tax=order.tax,
            shipping=order.shipping,
            status=status,
            created_at=order.placed_at,
            modified_at=ts,
            paid=order.was_paid,
            refunds=refunds,
            refunds_with_lines=True,
            email=EMAIL,
        )
        financial = {"pending": "pending", "refunded": "refunded"}.get(status, "paid")
        if status == "cancelled" and not order.was_paid:
            financial = "voided"
        if financial == "paid" and refunds:
            financial = "partially_refunded"
        facts = ModelFacts(
            ts=ts.replace(microsecond=0),
            financial=financial,
            cancelled=status == "cancelled",
            parts=(fr(order.goods), fr(order.tax), fr(order.shipping), fr(order.goods + order.tax + order.shipping)),
            parts_describe_order=True,
            refunds=[self.model_refund(order, r) for r in refunds],
        )
        return payload, facts

    def model_refund(self, order: StoreOrder, refund: Refund) -> ModelRefund:
        """A refund as the program reads it: a WooCommerce refund listed without its lines is money alone."""
        known = order.store == "shopify" or refund.lines
        # WooCommerce lists refunds without dates: the program dates one when it records it (deliver_to_model).
        sort_key = (refund.created_at, 0) if order.store == "shopify" else (None, 0)
        return ModelRefund(
            refund_id=str(refund.refund_id),
            sort_key=sort_key,
            money=fr(refund.money),
            goods=fr(refund.goods) if known else Fraction(0),
            tax=fr(refund.goods_tax) if known else Fraction(0),
            shipping=fr(refund.shipping) if known else Fraction(0),
        )

    def deliver_to_model(self, key, facts, refunds):
        for refund in refunds:
            if refund.sort_key[0] is None:  # WooCommerce: the program dates a refund when it first records it
                refund.sort_key = (self.clock + timedelta(days=3650), self.model.recorded + refunds.index(refund))
        self.model.deliver(key, facts, refunds)

    def post(self, send, topic, payload, *, key, facts, refunds):
        """Deliver it to the endpoint, and tell the model what the program must now know."""
        webhook_id = str(uuid.uuid4())
        if send == "shopify":
            response = self.store.shopify(topic, payload, webhook_id=webhook_id)
        else:
            response = self.store.woocommerce(topic, payload)
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "received", response.content
        self.seen[topic] += 1
        self.sent.append((send, topic, payload, webhook_id, key, facts, refunds))
        self.deliver_to_model(key, facts, refunds)

    def send_order(self, key, topic, *, hold=False, ts=None):
        order = self.truth[key]
        payload, facts = self.payload_of(order, ts or self.tick())
        if hold:
            self.held.append((key, order.store, topic, payload, facts))
            return
        self.post(order.store, topic, payload, key=key, facts=facts, refunds=facts.refunds)

    def known(self, key) -> bool:
        return self.model is not None and key in self.model.orders

    # -- rules -----------------------------------------------------------------------------------------------

    def keys(self, test) -> list:
        return [key for key, order in self.truth.items() if test(order, key)]

    def pick(self, data, test):
        return data.draw(st.sampled_from(self.keys(test)))

    def can(test):
        """A precondition: some order of the story passes `test(machine, order, key)`."""
        return precondition(
            lambda self: self.model is not None and any(test(self, o, k) for k, o in self.truth.items())
        )

    @precondition(lambda self: self.model is not None and len(self.truth) < 4)
    @rule(
        send=st.sampled_from(["shopify", "woocommerce"]),
        goods=st.integers(100, 60000),
        tax=st.integers(0, 6000),
        shipping=st.sampled_from([0, 0, 495, 1000]),
        paid=st.booleans(),
        hold=st.sampled_from([False, False, True]),
    )
    def new_order(self, send, goods, tax, shipping, paid, hold):
        """A new order, paid at once or left pending (WooCommerce: on hold); its first delivery may be held back."""
        order_id = (5876543210987000000 if send == "shopify" else 9000) + self.next_id
        self.next_id += 1
        amounts = (Decimal(goods) / 100, Decimal(tax) / 100, Decimal(shipping) / 100)
        order = StoreOrder(send, order_id, self.tick(), *amounts, placed_as=amounts)
        if paid:
            order.state, order.was_paid = "paid", True
        key = (send, order_id)
        self.truth[key] = order
        topic = "orders/create" if send == "shopify" else "order.created"
        self.send_order(key, topic, hold=hold)

    @can(lambda self, o, k: o.state == "pending")
    @rule(data=st.data(), hold=st.sampled_from([False, False, True]))
    def pay(self, data, hold):
        key = self.pick(data, lambda o, k: o.state == "pending")
        order = self.truth[key]
        order.state, order.was_paid = "paid", True
        self.send_order(key, "orders/paid" if order.store == "shopify" else "order.updated", hold=hold)

    @can(lambda self, o, k: o.store == "woocommerce" and o.state == "pending" and not self.known(k))
    @rule(data=st.data())
    def woo_created_and_paid_in_one_second(self, data):
        """WooCommerce's order.created (pending) and order.updated (paid) stamped with the same second."""
        key = self.pick(data, lambda o, k: o.store == "woocommerce" and o.state == "pending" and not self.known(k))
        order = self.truth[key]
        ts = self.tick()
        self.send_order(key, "order.created", ts=ts)
        order.state, order.was_paid = "paid", True
        self.send_order(key, "order.updated", ts=ts)
        self.seen["two states in one second"] += 1

    @can(lambda self, o, k: o.state in ("paid", "pending"))
    @rule(data=st.data(), percent=st.integers(40, 250), hold=st.sampled_from([False, False, True]))
    def edit(self, data, percent, hold):
        """An edit: the goods (and their tax) go up or down; never below what was refunded."""
        key = self.pick(data, lambda o, k: o.state in ("paid", "pending"))
        order = self.truth[key]
        goods = max((order.goods * percent / 100).quantize(Decimal("0.01")), order.refunded("goods") + 1)
        tax = max((order.tax * percent / 100).quantize(Decimal("0.01")), order.refunded("goods_tax"))
        order.goods, order.tax = goods, tax
        self.send_order(key, "orders/updated" if order.store == "shopify" else "order.updated", hold=hold)

    @can(lambda self, o, k: o.state == "paid" and self.known(k))
    @rule(
        data=st.data(),
        kind=st.sampled_from(["goods", "goods_and_tax", "tax", "shipping", "money"]),
        percent=st.integers(1, 100),
        lines=st.booleans(),
    )
    def refund(self, data, kind, percent, lines):
        """A partial refund of goods, tax, shipping or money alone (WooCommerce's sometimes without its lines)."""
        key = self.pick(data, lambda o, k: o.state == "paid" and self.known(k))
        order = self.truth[key]
        left = {
            part: getattr(order, name) - order.refunded(part)
            for part, name in (("goods", "goods"), ("goods_tax", "tax"), ("shipping", "shipping"))
        }
        total = order.goods + order.tax + order.shipping
        money_left = total - order.refunded("money")
        cut = {name: (amount * percent / 100).quantize(Decimal("0.01")) for name, amount in left.items()}
        parts = {
            "goods": {"goods": cut["goods"]},
            "goods_and_tax": {"goods": cut["goods"], "goods_tax": cut["goods_tax"]},
            "tax": {"goods_tax": cut["goods_tax"]},
            "shipping": {"shipping": left["shipping"]},
            "money": {},
        }[kind]
        money = sum(parts.values(), Decimal(0)) if parts else (money_left * percent / 100).quantize(Decimal("0.01"))
        if money <= 0 or money > money_left:
            return
        refund = Refund(self.next_id, money=money, created_at=self.tick(), lines=lines, **parts)
        self.next_id += 1
        order.refunds.append(refund)
        if order.store == "shopify":
            payload = shopify_refund(refund, order.order_id, refund.created_at)
            self.post(
                "shopify", "refunds/create", payload, key=key, facts=None, refunds=[self.model_refund(order, refund)]
            )
        else:
            self.send_order(key, "order.updated")

    @can(lambda self, o, k: o.state in ("pending", "paid"))
    @rule(data=st.data(), hold=st.sampled_from([False, False, True]))
    def cancel(self, data, hold):
        key = self.pick(data, lambda o, k: o.state in ("pending", "paid"))
        order = self.truth[key]
        order.state = "cancelled"
        self.send_order(key, "orders/cancelled" if order.store == "shopify" else "order.updated", hold=hold)

    @can(lambda self, o, k: o.store == "woocommerce" and o.state == "cancelled" and o.was_paid)
    @rule(data=st.data(), status=st.sampled_from(["processing", "completed"]))
    def reopen(self, data, status):
        """WooCommerce: a cancelled order set back to processing or completed (paid)."""
        key = self.pick(data, lambda o, k: o.store == "woocommerce" and o.state == "cancelled" and o.was_paid)
        order = self.truth[key]
        order.state, order.woo_status = "paid", status
        self.send_order(key, "order.updated")

    @can(lambda self, o, k: o.state == "paid")
    @rule(data=st.data())
    def refund_in_full(self, data):
        key = self.pick(data, lambda o, k: o.state == "paid")
        self.truth[key].state = "refunded"
        self.send_order(key, "orders/updated" if key[0] == "shopify" else "order.updated")

    @precondition(lambda self: self.held)
    @rule(which=st.integers(0, 5))
    def deliver_held(self, which):
        """A delivery held back arrives late, after newer ones."""
        key, send, topic, payload, facts = self.held.pop(which % len(self.held))
        self.post(send, topic, payload, key=key, facts=facts, refunds=facts.refunds)

    @precondition(lambda self: self.sent)
    @rule(which=st.integers(0, 50), new_delivery=st.booleans())
    def deliver_again(self, which, new_delivery):
        """A delivery sent again: the same one (Shopify's retry, WooCommerce's same body), or Shopify's with a new
        delivery id. Nothing may change."""
        send, topic, payload, webhook_id, key, facts, refunds = self.sent[which % len(self.sent)]
        if send == "shopify" and new_delivery:
            answer = self.store.shopify(topic, payload).json()["status"]
            assert answer == "received"
            self.deliver_to_model(key, facts, refunds)  # processed again: the facts are known, nothing changes
            return
        if send == "shopify":
            answer = self.store.shopify(topic, payload, webhook_id=webhook_id).json()["status"]
        else:
            answer = self.store.woocommerce(topic, payload).json()["status"]
        assert answer == "already received"
        self.seen["same delivery again"] += 1

    @precondition(lambda self: self.model is not None and self.model.available > 0)
    @rule(percent=st.integers(1, 100))
    def spend(self, percent):
        """The member spends points (a reward, say)."""
        points = max(1, self.model.available * percent // 100)
        points_adjust(member=Member.objects.get(email=EMAIL), points=-points, reason="Spent", actor=SPENDER)
        self.model.available -= points
        self.seen["points spent"] += 1

    # -- what must hold after every step ------------------------------------------------------------------

    @invariant()
    def member_holds_what_the_model_says(self):
        if self.model is None:
            return
        member = Member.objects.filter(email=EMAIL).first()
        figures = (member.available_points, member.pending_points, member.lifetime_points) if member else (0, 0, 0)
        assert figures == (self.model.available, 0, self.model.available)
        assert not WebhookEvent.objects.filter(status=EventStatus.FAILED).exists()

    @invariant()
    def each_order_records_what_was_not_recovered_never_more_than_owed(self):
        if self.model is None:
            return
        orders = {(o.store, int(o.store_order_id)): o for o in Order.objects.all()}
        not_recovered = orders_not_recovered(orders.values())
        for key, known in self.model.orders.items():
            assert not_recovered[orders[key].pk] == known.shortfall, key
            assert orders[key].reopenings == known.reopenings, key
        for earning in LedgerEntry.objects.filter(kind=EntryKind.EARN):
            taken = -(
                LedgerEntry.objects.filter(takes_back=earning)
                .exclude(status=EntryStatus.REJECTED)
                .aggregate(n=Sum("points"))["n"]
                or 0
            )
            taken -= LedgerEntry.objects.filter(reverses=earning).aggregate(n=Sum("points"))["n"] or 0
            recorded = Shortfall.objects.filter(entry=earning).aggregate(n=Sum("points"))["n"] or 0
            assert recorded <= earning.points - taken, earning.pk

    @invariant()
    def ledger_reconciles(self):
        assert not ledger_differences()


def test_orders_as_stores_send_them_match_the_model(store, program, order_rule):
    order_rule.hold_days = 0
    order_rule.save()
    OrderStories.store = store
    run = settings(
        max_examples=30,
        stateful_step_count=20,
        # The same 30 stories on every run: the checks below of what they covered cannot then fail by chance.
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )(OrderStories).TestCase
    OrderStories.seen.clear()
    run().runTest()
    seen = OrderStories.seen
    print(dict(seen))  # shown with pytest -s: what the stories did
    # The stories did what they are for (30 stories of up to 20 steps each).
    deliveries = sum(n for kind, n in seen.items() if "/" in kind or "." in kind)
    assert deliveries >= 100
    assert seen["edited up"] + seen["edited down"] > 0
    assert seen["refund took back"] > 0 and seen["full revert"] > 0 and seen["shortfall recorded"] > 0
