"""Shopify orders through the webhook: mirrored exactly, earning when paid, held, reverted once."""

from datetime import timedelta
from decimal import Decimal

import pytest

from loyalty.models import EntryKind, EntryStatus, LedgerEntry, Member, Order, OrderRefund, Shortfall
from loyalty.services import points_adjust
from loyalty.services.orders import unallocated_amount
from tests.factories import MemberFactory
from webhooks.models import EventStatus, WebhookEvent

from .conftest import load, recent

pytestmark = pytest.mark.django_db
BIG_ID = "5876543210987654321"


def figures(member):
    member.refresh_from_db()
    return member.available_points, member.pending_points, member.lifetime_points


def no_hold(order_rule):
    order_rule.hold_days = 0
    order_rule.save()


def test_order_is_mirrored_exactly(store):
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))

    order = Order.objects.get()
    assert order.store_order_id == BIG_ID  # above 2^53 and not rounded (a float would give ...654144)
    assert order.order_number == "#1042"
    assert order.total == Decimal("347.30")
    assert order.earnable_amount == Decimal("310.00")  # subtotal after the discount, without tax and shipping
    assert (order.currency, order.financial_status, order.cancelled, order.test) == ("USD", "paid", False, False)
    assert order.tags == "VIP, spring sale, wholesale"
    assert order.tag_list() == ["vip", "spring sale", "wholesale"]
    assert order.email == "bob.norman@mail.example.com"
    assert order.customer_id == "7390122345678901234"


def test_unknown_shopper_becomes_a_guest_member_with_pending_points(store):
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))

    member = Member.objects.get()
    assert (member.email, member.customer_id, member.first_name) == (
        "bob.norman@mail.example.com",
        "7390122345678901234",
        "Bob",
    )
    assert member.is_guest
    assert figures(member) == (0, 310, 0)
    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.status, entry.source) == (EntryKind.EARN, EntryStatus.PENDING, "order")
    order = Order.objects.get()
    assert entry.hold_until == order.placed_at + timedelta(days=14)
    assert entry.idempotency_key == f"order:{order.pk}:rule:{entry.earn_rule_id}"
    assert entry.actor_label.startswith("webhook: Shopify orders/paid")


def test_member_found_by_store_customer_id_before_email(store):
    member = MemberFactory(email="bob@elsewhere.example", customer_id="7390122345678901234")
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))

    assert Order.objects.get().member == member
    assert Member.objects.count() == 1
    assert figures(member) == (0, 310, 0)


def test_member_found_by_email_case_insensitively(store):
    member = MemberFactory(email="bob.norman@mail.example.com")
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    assert Order.objects.get().member == member
    member.refresh_from_db()
    assert member.customer_id == "7390122345678901234"


def test_points_are_active_at_once_without_a_hold(store, order_rule):
    no_hold(order_rule)
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    assert figures(Member.objects.get()) == (310, 0, 310)


def test_program_default_hold_applies_when_the_rule_sets_none(store, order_rule, program):
    order_rule.hold_days = None
    order_rule.save()
    program.hold_days_default = 30
    program.save()
    store.shopify("orders/paid", recent("shopify/orders_paid.json", placed_ago=timedelta(days=20)))
    entry = LedgerEntry.objects.get()
    assert entry.status == EntryStatus.PENDING
    assert entry.hold_until == Order.objects.get().placed_at + timedelta(days=30)


def test_hold_counts_from_when_the_order_was_placed(store):
    store.shopify("orders/paid", recent("shopify/orders_paid.json", placed_ago=timedelta(days=15)))
    assert LedgerEntry.objects.get().status == EntryStatus.ACTIVE


def test_unpaid_order_earns_nothing_until_paid(store):
    store.shopify("orders/create", recent("shopify/orders_create.json"))
    assert not LedgerEntry.objects.exists()
    assert "not paid yet (pending)" in WebhookEvent.objects.get().result

    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    assert LedgerEntry.objects.get().points == 310


def test_test_order_is_mirrored_but_earns_nothing(store):
    store.shopify("orders/paid", recent("shopify/orders_paid_test.json"))
    order = Order.objects.get()
    assert order.test is True
    assert not LedgerEntry.objects.exists()
    assert WebhookEvent.objects.get().result == "a test order earns nothing"


def test_order_placed_before_the_program_started_is_left_to_reward_past_actions(store, program):
    program.program_started_at = program.program_started_at.replace(year=2099)
    program.save()
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    assert not LedgerEntry.objects.exists()


def test_cancellation_during_the_hold_rejects_the_pending_points(store):
    store.shopify("orders/paid", recent("shopify/orders_paid.json", placed_ago=timedelta(days=1)))
    member = Member.objects.get()
    assert figures(member) == (0, 310, 0)

    store.shopify("orders/cancelled", recent("shopify/orders_cancelled.json", placed_ago=timedelta(days=1)))

    assert figures(member) == (0, 0, 0)
    entry = LedgerEntry.objects.get()
    assert entry.status == EntryStatus.REJECTED
    assert "cancelled: pending +310 rejected" in WebhookEvent.objects.get(topic="orders/cancelled").result


def test_cancellation_after_the_hold_posts_one_reversal(store, order_rule):
    no_hold(order_rule)
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    cancelled = recent("shopify/orders_cancelled.json")
    store.shopify("orders/cancelled", cancelled)
    store.shopify("orders/updated", cancelled)

    member = Member.objects.get()
    assert figures(member) == (0, 0, 0)
    reversal = LedgerEntry.objects.get(kind=EntryKind.REVERSAL)
    assert reversal.points == -310
    assert reversal.reverses.kind == EntryKind.EARN


def test_partial_refund_takes_back_the_refunded_share(store, order_rule):
    no_hold(order_rule)
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    store.shopify("refunds/create", recent("shopify/refunds_create_partial.json"))

    refund = OrderRefund.objects.get()
    # Only the successful refund transaction counts as money (the failed attempt of the same amount does not).
    assert (refund.store_refund_id, refund.amount) == ("9876543210123456789", Decimal("153.90"))
    # What it returned: one shoe's subtotal and its tax.
    assert (refund.goods_amount, refund.tax_amount, unallocated_amount(refund)) == (
        Decimal("142.50"),
        Decimal("11.40"),
        Decimal("0.00"),
    )
    take_back = LedgerEntry.objects.get(kind=EntryKind.REVERSAL)
    assert take_back.points == -142  # floor(310 x 142.50 / 310.00): the goods' share, not the money's (153.90)
    assert take_back.takes_back == LedgerEntry.objects.get(kind=EntryKind.EARN)
    assert figures(Member.objects.get()) == (168, 0, 168)


def test_partial_refund_during_the_hold_is_pending_with_the_earning(store):
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    store.shopify("refunds/create", recent("shopify/refunds_create_partial.json"))
    assert figures(Member.objects.get()) == (0, 168, 0)


def test_shipping_only_refund_takes_nothing_while_shipping_does_not_earn(store, order_rule):
    no_hold(order_rule)
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    store.shopify("refunds/create", recent("shopify/refunds_create_shipping_only.json"))

    refund = OrderRefund.objects.get()
    assert (refund.amount, refund.shipping_amount, unallocated_amount(refund)) == (
        Decimal("12.50"),
        Decimal("12.50"),
        Decimal("0.00"),
    )
    assert not LedgerEntry.objects.filter(kind=EntryKind.REVERSAL).exists()
    assert figures(Member.objects.get()) == (310, 0, 310)


def test_refunds_then_cancellation_never_take_back_more_than_was_earned(store, order_rule):
    no_hold(order_rule)
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    store.shopify("refunds/create", recent("shopify/refunds_create_shipping_only.json"))
    store.shopify("refunds/create", recent("shopify/refunds_create_partial.json"))
    store.shopify("orders/cancelled", recent("shopify/orders_cancelled.json"))

    taken = [e.points for e in LedgerEntry.objects.filter(kind=EntryKind.REVERSAL).order_by("pk")]
    assert taken == [-142, -168]
    assert sum(taken) == -310
    assert figures(Member.objects.get()) == (0, 0, 0)


def test_refund_after_points_were_spent_takes_what_is_available_and_records_the_shortfall(store, order_rule, system):
    no_hold(order_rule)
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    member = Member.objects.get()
    points_adjust(member=member, points=-300, reason="Spent on a gift card", actor=system)
    assert figures(member)[0] == 10

    store.shopify("orders/cancelled", recent("shopify/orders_cancelled.json"))

    assert figures(member)[0] == 0
    shortfall = Shortfall.objects.get()
    assert shortfall.points == 300
    assert shortfall.entry == LedgerEntry.objects.get(kind=EntryKind.EARN)
    assert "cancelled: took back 10 (300 already spent, recorded as a shortfall)" in (
        WebhookEvent.objects.get(topic="orders/cancelled").result
    )


def test_allow_policy_lets_the_balance_go_negative(store, order_rule, program, system):
    no_hold(order_rule)
    program.revert_negative_balance_policy = "allow"
    program.save()
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    member = Member.objects.get()
    points_adjust(member=member, points=-300, reason="Spent", actor=system)
    store.shopify("orders/cancelled", recent("shopify/orders_cancelled.json"))
    assert figures(member)[0] == -300
    assert not Shortfall.objects.exists()


def test_events_out_of_order_land_once(store, order_rule):
    no_hold(order_rule)
    # The latest state first, then the older deliveries that were held up.
    store.shopify("orders/updated", recent("shopify/orders_updated_partially_refunded.json"))
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    store.shopify("refunds/create", recent("shopify/refunds_create_partial.json"))
    store.shopify("orders/create", recent("shopify/orders_create.json"))

    order = Order.objects.get()
    assert order.financial_status == "partially_refunded"  # the older deliveries did not roll it back
    # The latest state's current amounts left the refunded shoe out; added back, the order earned on all of it.
    assert [e.points for e in LedgerEntry.objects.order_by("pk")] == [310, -142]
    assert figures(Member.objects.get()) == (168, 0, 168)


def test_refund_arriving_before_its_order_is_applied_when_the_order_arrives(store, order_rule):
    no_hold(order_rule)
    store.shopify("refunds/create", recent("shopify/refunds_create_partial.json"))
    waiting = WebhookEvent.objects.get()
    assert waiting.status == EventStatus.FAILED
    assert "has not arrived yet" in waiting.error

    store.shopify("orders/paid", recent("shopify/orders_paid.json"))

    waiting.refresh_from_db()
    assert (waiting.status, waiting.attempts) == (EventStatus.PROCESSED, 2)
    assert [e.points for e in LedgerEntry.objects.order_by("pk")] == [310, -142]


def test_revert_tag_takes_the_points_back(store, order_rule, program):
    no_hold(order_rule)
    program.revert_tags = "fraud, chargeback"
    program.save()
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    tagged = recent("shopify/orders_paid.json", placed_ago=timedelta(minutes=30))
    tagged["tags"] = "VIP, Fraud"
    store.shopify("orders/updated", tagged)

    assert LedgerEntry.objects.get(kind=EntryKind.REVERSAL).points == -310
    assert "tagged fraud: took back 310" in WebhookEvent.objects.get(topic="orders/updated").result


def test_order_tagged_before_it_earned_never_earns(store, program):
    program.revert_tags = "fraud"
    program.save()
    tagged = recent("shopify/orders_paid.json")
    tagged["tags"] = "fraud"
    store.shopify("orders/paid", tagged)
    assert not LedgerEntry.objects.exists()


def test_reverts_off_keeps_the_points(store, order_rule, program):
    no_hold(order_rule)
    program.revert_enabled = False
    program.save()
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    store.shopify("refunds/create", recent("shopify/refunds_create_partial.json"))
    store.shopify("orders/cancelled", recent("shopify/orders_cancelled.json"))
    assert figures(Member.objects.get()) == (310, 0, 310)


def test_revert_on_cancelled_off_but_refunded_on_still_reverts_a_refunded_cancellation(store, order_rule, program):
    no_hold(order_rule)
    program.revert_on_cancelled = False
    program.save()
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    store.shopify("orders/cancelled", recent("shopify/orders_cancelled.json"))  # financial status "refunded"
    assert figures(Member.objects.get()) == (0, 0, 0)


def test_partial_refund_setting_off_takes_nothing_for_a_partial_refund(store, order_rule, program):
    no_hold(order_rule)
    program.revert_on_partially_refunded = False
    program.save()
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    store.shopify("orders/updated", recent("shopify/orders_updated_partially_refunded.json"))
    assert figures(Member.objects.get()) == (310, 0, 310)
    assert OrderRefund.objects.count() == 1


def test_order_that_never_earned_reverts_nothing(store):
    store.shopify("orders/create", recent("shopify/orders_create.json"))
    voided = recent("shopify/orders_cancelled.json")
    voided["financial_status"] = "voided"
    voided["refunds"] = []
    store.shopify("orders/cancelled", voided)

    assert Order.objects.get().cancelled is True
    assert not LedgerEntry.objects.exists()
    assert not Shortfall.objects.exists()


def test_staff_reversal_before_the_cancellation_is_not_doubled(store, order_rule, manager):
    from loyalty.services import entry_reverse

    no_hold(order_rule)
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    entry_reverse(entry=LedgerEntry.objects.get(), reason="Wrong credit", actor=manager)
    store.shopify("orders/cancelled", recent("shopify/orders_cancelled.json"))

    assert LedgerEntry.objects.filter(kind=EntryKind.REVERSAL).count() == 1
    assert WebhookEvent.objects.get(topic="orders/cancelled").status == EventStatus.PROCESSED


def test_order_without_an_email_is_mirrored_without_a_member(store):
    payload = recent("shopify/orders_paid.json")
    payload["email"] = payload["contact_email"] = ""
    payload["customer"] = None
    store.shopify("orders/paid", payload)
    assert Order.objects.get().member is None
    assert not Member.objects.exists()
    assert WebhookEvent.objects.get().result == "no customer email: nobody to credit"


def test_order_edited_after_payment_earns_for_the_goods_added(store, order_rule):
    """orders/edited lists the added line without prices; the orders/updated sent with it carries the new totals."""
    no_hold(order_rule)
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    store.shopify("orders/edited", load("shopify/orders_edited.json"))
    edited = recent("shopify/orders_updated_edited.json")
    store.shopify("orders/updated", edited)
    store.shopify("orders/updated", edited)  # sent again under a new delivery id: the same version

    assert figures(Member.objects.get()) == (335, 0, 335)  # 310 + the socks' 25
    top_up = LedgerEntry.objects.get(kind=EntryKind.EARN, points=25)
    assert top_up.idempotency_key.endswith(":top-up")
    note = WebhookEvent.objects.get(topic="orders/edited")
    assert (note.status, note.order_ref) == (EventStatus.IGNORED, BIG_ID)


def test_refund_of_money_alone_takes_back_its_share_of_the_order_total(store, order_rule):
    """A goodwill refund of 34.73 (10% of 347.30) tied to no line: 10% of the goods' points."""
    no_hold(order_rule)
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    store.shopify("refunds/create", recent("shopify/refunds_create_money_only.json"))
    assert unallocated_amount(OrderRefund.objects.get()) == Decimal("34.73")
    assert LedgerEntry.objects.get(kind=EntryKind.REVERSAL).points == -31
    assert figures(Member.objects.get()) == (279, 0, 279)
