"""Issue 12's order stories, as stores send them: each ended with the wrong points before, each is right now.

Every story goes through the real endpoints (signed deliveries, the drain), with the way to earn at 1 point per
currency unit, no hold, reverts on, and the program's default base (goods after discounts, no tax, no shipping).
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from loyalty.models import EntryKind, LedgerEntry, Member, Order, Shortfall
from loyalty.services import points_adjust
from webhooks.models import EventStatus, WebhookEvent
from webhooks.services import events_due_for_retry

from .payloads import Refund, shopify_order, shopify_refund, woo_order

pytestmark = pytest.mark.django_db
D = Decimal
SHOPIFY_ID = 5876543210987654399
WOO_ID = 4242


@pytest.fixture
def rule(order_rule):
    order_rule.hold_days = 0
    order_rule.save()
    return order_rule


@pytest.fixture
def clock():
    """Placed an hour ago; each call of next() is one second later than the last."""

    class Clock:
        placed = timezone.now().replace(microsecond=0) - timedelta(hours=1)
        now = placed

        def next(self, seconds=1):
            self.now += timedelta(seconds=seconds)
            return self.now

    return Clock()


def available(email=None):
    member = Member.objects.get(email=email) if email else Member.objects.get()
    return member.available_points


def taken_back():
    return -sum(LedgerEntry.objects.filter(kind=EntryKind.REVERSAL).values_list("points", flat=True))


# ---------------------------------------------------------------------------------------------------------------
# Refunds take back on the base the points were earned on


def test_shopify_refund_of_money_only_takes_its_share_of_the_goods_not_of_the_money(store, rule, clock):
    """100 goods + 20 tax earned 100; a refund of 60 of its 120 took back 60. It is half the order: 50."""
    store.shopify(
        "orders/paid", shopify_order(SHOPIFY_ID, goods=100, tax=20, placed_at=clock.placed, updated_at=clock.next())
    )
    assert available() == 100

    store.shopify("refunds/create", shopify_refund(Refund(1, money=D("60")), SHOPIFY_ID, clock.next()))

    assert taken_back() == 50
    assert available() == 50


def test_shopify_refund_of_lines_takes_back_their_goods_without_their_tax(store, rule, clock):
    store.shopify(
        "orders/paid", shopify_order(SHOPIFY_ID, goods=100, tax=20, placed_at=clock.placed, updated_at=clock.next())
    )
    refund = Refund(1, money=D("60"), goods=D("50"), goods_tax=D("10"))
    store.shopify("refunds/create", shopify_refund(refund, SHOPIFY_ID, clock.next()))
    assert available() == 50


def test_shopify_shipping_only_refund_takes_nothing_for_goods_the_member_kept(store, rule, clock):
    """100 goods + 10 shipping, the 10 of shipping refunded: it took back 10 points. Shipping does not earn: 0."""
    store.shopify(
        "orders/paid",
        shopify_order(SHOPIFY_ID, goods=100, shipping=10, placed_at=clock.placed, updated_at=clock.next()),
    )
    store.shopify(
        "refunds/create", shopify_refund(Refund(1, money=D("10"), shipping=D("10")), SHOPIFY_ID, clock.next())
    )
    assert taken_back() == 0
    assert available() == 100


def test_shipping_refund_takes_its_share_when_the_program_says_shipping_earns(store, rule, clock, program):
    program.earn_on_shipping = True
    program.save()
    store.shopify(
        "orders/paid",
        shopify_order(SHOPIFY_ID, goods=100, shipping=10, placed_at=clock.placed, updated_at=clock.next()),
    )
    assert available() == 110
    store.shopify(
        "refunds/create", shopify_refund(Refund(1, money=D("10"), shipping=D("10")), SHOPIFY_ID, clock.next())
    )
    assert available() == 100


def test_tax_earns_and_is_taken_back_when_the_program_says_so(store, rule, clock, program):
    program.earn_on_tax = True
    program.save()
    store.shopify(
        "orders/paid", shopify_order(SHOPIFY_ID, goods=100, tax=20, placed_at=clock.placed, updated_at=clock.next())
    )
    assert available() == 120
    store.shopify("refunds/create", shopify_refund(Refund(1, money=D("60")), SHOPIFY_ID, clock.next()))
    assert available() == 60


def test_woocommerce_refund_including_tax_takes_its_share_of_the_money(store, rule, clock):
    """50 goods + 10 tax + 4.50 shipping = 64.50. A refund of 20 including tax took 40% of the points (20 of the 50
    goods) for 31% of the money. Prorated over the order's total: floor(50 x 20 / 64.50) = 15."""
    store.woocommerce(
        "order.created",
        woo_order(WOO_ID, goods=50, tax=10, shipping="4.50", created_at=clock.placed, modified_at=clock.next()),
    )
    assert available() == 50
    store.woocommerce(
        "order.updated",
        woo_order(
            WOO_ID,
            goods=50,
            tax=10,
            shipping="4.50",
            status="processing",
            created_at=clock.placed,
            modified_at=clock.next(),
            refunds=(Refund(901, money=D("20")),),
        ),
    )
    assert taken_back() == 15
    assert available() == 35


def test_woocommerce_refund_with_its_lines_takes_back_the_goods_it_names(store, rule, clock):
    store.woocommerce(
        "order.created",
        woo_order(WOO_ID, goods=50, tax=10, shipping="4.50", created_at=clock.placed, modified_at=clock.next()),
    )
    refunds = (Refund(901, money=D("16.50"), goods=D("10"), goods_tax=D("2"), shipping=D("4.50")),)
    store.woocommerce(
        "order.updated",
        woo_order(
            WOO_ID,
            goods=50,
            tax=10,
            shipping="4.50",
            created_at=clock.placed,
            modified_at=clock.next(),
            refunds=refunds,
            refunds_with_lines=True,
        ),
    )
    assert taken_back() == 10  # the goods' 10; not their tax, not the shipping
    assert available() == 40


# ---------------------------------------------------------------------------------------------------------------
# Edits follow the order


def test_shopify_order_edited_up_earns_the_difference_and_a_later_refund_takes_back_its_share(store, rule, clock):
    """Paid 100 (earned 100), edited to 200: it earned nothing more, and a refund of 100 then took back 50, leaving
    50 points for 100 of goods kept. Now: the edit earns 100 more, the refund takes back 100, 100 stay."""
    store.shopify("orders/paid", shopify_order(SHOPIFY_ID, goods=100, placed_at=clock.placed, updated_at=clock.next()))
    edited = shopify_order(
        SHOPIFY_ID, goods=200, placed_at=clock.placed, updated_at=clock.next(), placed_as=(100, 0, 0)
    )
    store.shopify("orders/edited", {"order_edit": {"id": 77, "order_id": SHOPIFY_ID, "line_items": {}}})
    store.shopify("orders/updated", edited)
    assert available() == 200

    store.shopify("orders/updated", edited)  # the same version again (a new delivery): nothing more
    store.shopify("refunds/create", shopify_refund(Refund(1, money=D("100"), goods=D("100")), SHOPIFY_ID, clock.next()))

    assert available() == 100
    assert taken_back() == 100
    note = WebhookEvent.objects.get(topic="orders/edited")
    assert note.status == EventStatus.IGNORED
    assert "new totals arrive with the orders/updated" in note.result


def test_shopify_order_edited_down_takes_back_the_difference_once(store, rule, clock):
    store.shopify("orders/paid", shopify_order(SHOPIFY_ID, goods=200, placed_at=clock.placed, updated_at=clock.next()))
    edited = shopify_order(
        SHOPIFY_ID, goods=150, placed_at=clock.placed, updated_at=clock.next(), placed_as=(200, 0, 0)
    )
    for _ in range(2):
        store.shopify("orders/updated", edited)
    assert available() == 150
    assert taken_back() == 50


def test_shopify_orders_edited_carrying_the_order_is_followed_too(store, rule, clock):
    store.shopify("orders/paid", shopify_order(SHOPIFY_ID, goods=100, placed_at=clock.placed, updated_at=clock.next()))
    edited = shopify_order(
        SHOPIFY_ID, goods=130, placed_at=clock.placed, updated_at=clock.next(), placed_as=(100, 0, 0)
    )
    store.shopify("orders/edited", edited)
    assert available() == 130


def test_an_older_version_arriving_late_changes_nothing(store, rule, clock):
    first = shopify_order(SHOPIFY_ID, goods=100, placed_at=clock.placed, updated_at=clock.next())
    edited = shopify_order(
        SHOPIFY_ID, goods=200, placed_at=clock.placed, updated_at=clock.next(), placed_as=(100, 0, 0)
    )
    store.shopify("orders/updated", edited)
    store.shopify("orders/paid", first)
    assert available() == 200
    assert taken_back() == 0


def test_woocommerce_order_edited_after_payment_follows_its_new_total(store, rule, clock):
    store.woocommerce(
        "order.created", woo_order(WOO_ID, goods=80, tax=16, created_at=clock.placed, modified_at=clock.next())
    )
    store.woocommerce(
        "order.updated", woo_order(WOO_ID, goods=120, tax=24, created_at=clock.placed, modified_at=clock.next())
    )
    assert available() == 120
    store.woocommerce(
        "order.updated", woo_order(WOO_ID, goods=90, tax=18, created_at=clock.placed, modified_at=clock.next())
    )
    assert available() == 90


# ---------------------------------------------------------------------------------------------------------------
# Reopened orders earn again


def test_woocommerce_order_cancelled_then_completed_earns_again_once_per_reopening(store, rule, clock):
    """processing -> cancelled -> completed: its points were taken on cancel and never earned again."""

    def send(status):
        payload = woo_order(WOO_ID, goods=40, status=status, created_at=clock.placed, modified_at=clock.next())
        store.woocommerce("order.updated", payload)
        return payload

    send("processing")
    send("cancelled")
    assert available() == 0
    completed = send("completed")
    assert available() == 40
    store.woocommerce("order.updated", completed)  # the same body again: one event
    send("completed")  # a later update of the same state: no second earning
    assert available() == 40
    assert Order.objects.get().reopenings == 1

    send("cancelled")
    assert available() == 0
    send("processing")
    assert available() == 40
    earnings = LedgerEntry.objects.filter(kind=EntryKind.EARN).order_by("pk")
    assert [e.points for e in earnings] == [40, 40, 40]
    # Never two live earnings: each earlier one was reversed before the next.
    assert [LedgerEntry.objects.filter(reverses=e).exists() for e in earnings] == [True, True, False]


def test_a_staff_reversal_is_not_undone_by_a_later_reopening(store, rule, clock, manager):
    from loyalty.services import entry_reverse

    store.woocommerce("order.created", woo_order(WOO_ID, goods=40, created_at=clock.placed, modified_at=clock.next()))
    entry_reverse(entry=LedgerEntry.objects.get(kind=EntryKind.EARN), reason="Wrong credit", actor=manager)
    for status in ("cancelled", "completed"):
        woo = woo_order(WOO_ID, goods=40, status=status, created_at=clock.placed, modified_at=clock.next())
        store.woocommerce("order.updated", woo)
    assert available() == 0
    assert LedgerEntry.objects.filter(kind=EntryKind.EARN).count() == 1


# ---------------------------------------------------------------------------------------------------------------
# The shortfall never exceeds what an earning still owes


def test_shortfalls_of_an_earning_never_exceed_what_it_owed(store, rule, clock, system, staff_client):
    """Earned 600, 500 spent, two partial refunds then the full refund recorded 230 + 330 + 500 = 1,060 for an
    earning that could only ever owe 500."""
    store.shopify("orders/paid", shopify_order(SHOPIFY_ID, goods=600, placed_at=clock.placed, updated_at=clock.next()))
    member = Member.objects.get()
    points_adjust(member=member, points=-500, reason="Spent on a gift card", actor=system)

    store.shopify("refunds/create", shopify_refund(Refund(1, money=D("330")), SHOPIFY_ID, clock.next()))
    store.shopify("refunds/create", shopify_refund(Refund(2, money=D("330")), SHOPIFY_ID, clock.next()))
    refunded = shopify_order(
        SHOPIFY_ID,
        goods=600,
        placed_at=clock.placed,
        updated_at=clock.next(),
        financial_status="refunded",
        refunds=(Refund(1, money=D("330")), Refund(2, money=D("330"))),
    )
    store.shopify("orders/updated", refunded)

    member.refresh_from_db()
    assert member.available_points == 0
    shortfalls = list(Shortfall.objects.order_by("pk").values_list("points", flat=True))
    assert shortfalls == [230, 270]
    assert sum(shortfalls) == 500  # earned 600 less the 100 taken back
    order = Order.objects.get()
    page = staff_client.get(reverse("admin:loyalty_order_change", args=[order.pk])).content.decode()
    assert 'Not recovered (already spent, recorded as a shortfall): <strong class="not-recovered">500</strong>' in page
    listing = staff_client.get(reverse("admin:loyalty_shortfall_changelist")).content.decode()
    assert f'href="{reverse("admin:loyalty_order_change", args=[order.pk])}"' in listing
    orders = staff_client.get(reverse("admin:loyalty_order_changelist")).content.decode()
    assert '<td class="field-points_not_recovered">500</td>' in orders


# ---------------------------------------------------------------------------------------------------------------
# Deliveries


def test_woocommerce_two_states_in_one_second_are_two_events_and_the_paid_one_earns(store, rule, clock):
    """order.created (pending) then order.updated (processing, paid) with the same date_modified_gmt: the update was
    answered "already received" and the order never earned."""
    second = clock.next()
    pending = woo_order(WOO_ID, goods=40, status="pending", paid=False, created_at=clock.placed, modified_at=second)
    paid = woo_order(WOO_ID, goods=40, status="processing", created_at=clock.placed, modified_at=second)
    answers = [
        store.woocommerce("order.created", pending).json()["status"],
        store.woocommerce("order.updated", paid).json()["status"],
        store.woocommerce("order.updated", paid).json()["status"],  # the same body again
    ]
    assert answers == ["received", "received", "already received"]
    assert available() == 40


def test_woocommerce_two_states_in_one_second_arriving_the_other_way_round_still_earn(store, rule, clock):
    second = clock.next()
    pending = woo_order(WOO_ID, goods=40, status="pending", paid=False, created_at=clock.placed, modified_at=second)
    paid = woo_order(WOO_ID, goods=40, status="processing", created_at=clock.placed, modified_at=second)
    store.woocommerce("order.updated", paid)
    store.woocommerce("order.created", pending)
    assert Order.objects.get().financial_status == "paid"  # the state further along stands
    assert available() == 40


@pytest.mark.parametrize(
    ("send", "field"),
    [
        ("woocommerce", "total"),
        ("shopify", "total_price"),
        ("shopify", "current_subtotal_price"),
    ],
)
def test_money_too_big_is_refused_at_the_endpoint_naming_the_field(store, rule, clock, send, field):
    """A webhook total of 99999999999999999999999.99 was answered 200, then failed in the worker."""
    if send == "woocommerce":
        payload = woo_order(WOO_ID, goods=40, created_at=clock.placed, modified_at=clock.next())
        payload[field] = "99999999999999999999999.99"
        response = store.woocommerce("order.created", payload)
    else:
        payload = shopify_order(SHOPIFY_ID, goods=40, placed_at=clock.placed, updated_at=clock.next())
        payload[field] = "99999999999999999999999.99"
        response = store.shopify("orders/paid", payload)

    assert response.status_code == 400
    assert f"Field {field} is 99999999999999999999999.99: more than an order can hold" in response.json()["reason"]
    assert not Order.objects.exists()
    event = WebhookEvent.objects.get()
    assert (event.status, event.attempts) == (EventStatus.FAILED, 0)
    assert events_due_for_retry(now=timezone.now() + timedelta(hours=1)) == []  # never taken for processing


def test_refund_money_too_big_is_refused_naming_the_transaction(store, rule, clock):
    store.shopify("orders/paid", shopify_order(SHOPIFY_ID, goods=40, placed_at=clock.placed, updated_at=clock.next()))
    refund = shopify_refund(Refund(1, money=D("1")), SHOPIFY_ID, clock.next())
    refund["transactions"][0]["amount"] = "1e15"
    response = store.shopify("refunds/create", refund)
    assert response.status_code == 400
    assert "transactions[0].amount" in response.json()["reason"]
    assert available() == 40
