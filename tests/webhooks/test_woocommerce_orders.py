"""WooCommerce orders through the webhook: statuses mapped, refunds from the negative totals, re-sends deduplicated."""

from datetime import timedelta
from decimal import Decimal

import pytest

from loyalty.models import EntryKind, EntryStatus, LedgerEntry, Member, Order, OrderRefund
from loyalty.services.orders import unallocated_amount
from webhooks.models import WebhookEvent

from .conftest import recent

pytestmark = pytest.mark.django_db


def figures(member):
    member.refresh_from_db()
    return member.available_points, member.pending_points, member.lifetime_points


def test_processing_order_earns_on_goods_without_tax_or_shipping(store):
    response = store.woocommerce("order.created", recent("woocommerce/order_created.json"))

    assert response.status_code == 200
    order = Order.objects.get()
    assert (order.store, order.store_order_id, order.order_number) == ("woocommerce", "727", "727")
    assert (order.total, order.earnable_amount, order.currency) == (Decimal("53.43"), Decimal("40.00"), "EUR")
    assert order.financial_status == "paid"
    member = Member.objects.get()
    assert (member.email, member.customer_id, member.is_guest) == ("jeanne.dupont@exemple.example", "26", True)
    assert figures(member) == (0, 40, 0)


def test_guest_checkout_on_hold_is_a_guest_with_no_points_yet(store):
    store.woocommerce("order.created", recent("woocommerce/order_created_guest_on_hold.json"))
    member = Member.objects.get()
    assert (member.email, member.customer_id) == ("walk.in@exemple.example", None)
    assert Order.objects.get().financial_status == "pending"
    assert not LedgerEntry.objects.exists()


def test_refund_of_money_only_takes_back_its_share_of_the_order_total(store, order_rule):
    order_rule.hold_days = 0
    order_rule.save()
    store.woocommerce("order.created", recent("woocommerce/order_created.json"))
    store.woocommerce("order.updated", recent("woocommerce/order_updated_partial_refund.json"))

    refund = OrderRefund.objects.get()
    assert (refund.store_refund_id, refund.amount, unallocated_amount(refund)) == (
        "731",
        Decimal("14.88"),
        Decimal("14.88"),
    )
    assert Order.objects.get().financial_status == "partially_refunded"
    # The refund's 14.88 (tax and all) is 27.8% of the order's 53.43: floor(40 x 14.88 / 53.43) = 11 points.
    assert LedgerEntry.objects.get(kind=EntryKind.REVERSAL).points == -11
    assert figures(Member.objects.get()) == (29, 0, 29)


def test_cancelled_during_the_hold_rejects_the_pending_points(store):
    store.woocommerce("order.created", recent("woocommerce/order_created.json", placed_ago=timedelta(days=1)))
    store.woocommerce("order.updated", recent("woocommerce/order_updated_cancelled.json", placed_ago=timedelta(days=1)))

    order = Order.objects.get()
    assert order.cancelled is True
    assert LedgerEntry.objects.get().status == EntryStatus.REJECTED
    assert figures(Member.objects.get()) == (0, 0, 0)


def test_resent_order_state_is_received_once_whatever_its_delivery_id(store):
    payload = recent("woocommerce/order_created.json")
    answers = [store.woocommerce("order.updated", payload).json()["status"] for _ in range(3)]
    assert answers == ["received", "already received", "already received"]
    assert WebhookEvent.objects.get().delivery_id.startswith("order:727:")
    assert LedgerEntry.objects.count() == 1


def test_deleted_order_topic_is_ignored(store):
    response = store.woocommerce("order.deleted", {"id": 727})
    assert response.json()["status"] == "ignored"


def test_refunded_order_reverts_in_full(store, order_rule):
    order_rule.hold_days = 0
    order_rule.save()
    store.woocommerce("order.created", recent("woocommerce/order_created.json"))
    refunded = recent("woocommerce/order_updated_partial_refund.json")
    refunded["status"] = "refunded"
    refunded["refunds"] = [{"id": 731, "reason": "", "total": "-14.88"}, {"id": 740, "reason": "", "total": "-38.55"}]
    store.woocommerce("order.updated", refunded)

    assert sum(LedgerEntry.objects.filter(kind=EntryKind.REVERSAL).values_list("points", flat=True)) == -40
    assert figures(Member.objects.get()) == (0, 0, 0)


def test_refund_with_its_lines_takes_back_the_goods_it_names(store, order_rule):
    order_rule.hold_days = 0
    order_rule.save()
    store.woocommerce("order.created", recent("woocommerce/order_created.json"))
    store.woocommerce("order.updated", recent("woocommerce/order_updated_refund_with_lines.json"))
    refund = OrderRefund.objects.get()
    assert (refund.goods_amount, refund.tax_amount, refund.amount) == (
        Decimal("12.50"),
        Decimal("2.38"),
        Decimal("14.88"),
    )
    assert LedgerEntry.objects.get(kind=EntryKind.REVERSAL).points == -12  # the mug's 12.50 of the 40.00 of goods
    assert figures(Member.objects.get()) == (28, 0, 28)


def test_cancelled_order_completed_again_earns_again(store, order_rule):
    order_rule.hold_days = 0
    order_rule.save()
    store.woocommerce("order.created", recent("woocommerce/order_created.json"))
    store.woocommerce("order.updated", recent("woocommerce/order_updated_cancelled.json"))
    assert figures(Member.objects.get()) == (0, 0, 0)
    store.woocommerce("order.updated", recent("woocommerce/order_updated_completed_after_cancel.json"))
    assert figures(Member.objects.get()) == (40, 0, 40)
    assert Order.objects.get().reopenings == 1
    assert "reopening 1 earns again" in WebhookEvent.objects.order_by("pk").last().result
