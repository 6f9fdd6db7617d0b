"""The drain: received events applied in batches, one transaction each, a failing event kept apart from the others."""

import copy
import json
import threading

import pytest
from django.db import IntegrityError, OperationalError, close_old_connections, connection, transaction

from loyalty.actors import SystemActor
from loyalty.models import EntrySource, LedgerEntry, Member, Order
from loyalty.services import points_earn
from tests.factories import MemberFactory
from webhooks import queueing, services
from webhooks.models import EventStatus, WebhookEvent

from .conftest import recent

pytestmark = pytest.mark.django_db


def shopify_paid(order_id: int, email: str) -> dict:
    """The fixture's paid order (310 points) under another order id and shopper."""
    payload = copy.deepcopy(recent("shopify/orders_paid.json"))
    payload.update(id=order_id, email=email, customer={"id": order_id + 1, "email": email})
    return payload


def kept(payload: dict, *, topic: str = "orders/paid", ref: str | None = None) -> WebhookEvent:
    """A delivery as the endpoint keeps it, waiting for a drain."""
    return WebhookEvent.objects.create(
        store="shopify",
        topic=topic,
        delivery_id=f"webhook:{WebhookEvent.objects.count()}-{ref or payload['id']}",
        order_ref=ref or str(payload["id"]),
        body=json.dumps(payload),
    )


def points_of(email: str) -> int:
    member = Member.objects.get(email=email)
    return member.pending_points + member.available_points


def test_a_failing_event_in_a_batch_does_not_spoil_the_others(order_rule):
    first = kept(shopify_paid(1001, "first@shop.example"))
    orphan = kept({"id": 9, "order_id": 42, "transactions": []}, topic="refunds/create", ref="42")
    last = kept(shopify_paid(1003, "last@shop.example"))

    counts = services.events_drain()

    assert counts == {EventStatus.PROCESSED: 2, EventStatus.FAILED: 1}
    statuses = dict(WebhookEvent.objects.values_list("pk", "status"))
    assert (statuses[first.pk], statuses[orphan.pk], statuses[last.pk]) == ("processed", "failed", "processed")
    orphan.refresh_from_db()
    assert orphan.error == "Order 42 has not arrived yet; the refund is retried when it does."
    assert points_of("first@shop.example") == points_of("last@shop.example") == 310
    assert WebhookEvent.objects.filter(attempts=1).count() == 3


def test_events_of_one_order_in_one_batch_apply_in_the_order_they_arrived(order_rule):
    paid = recent("shopify/orders_paid.json")
    kept(paid)
    kept(recent("shopify/refunds_create_partial.json"), topic="refunds/create", ref=str(paid["id"]))
    kept(recent("shopify/orders_cancelled.json"), topic="orders/cancelled", ref=str(paid["id"]))

    services.events_drain()

    assert not WebhookEvent.objects.exclude(status=EventStatus.PROCESSED).exists()
    member = Member.objects.get(email="bob.norman@mail.example.com")
    assert (member.available_points, member.pending_points) == (0, 0)
    assert LedgerEntry.objects.get(kind="earn").status == "rejected"


def test_a_drain_works_through_more_events_than_one_batch(order_rule):
    for i in range(7):
        kept(shopify_paid(2000 + i, f"shopper{i}@shop.example"))

    counts = services.events_drain(batch_size=3)

    assert counts == {EventStatus.PROCESSED: 7}
    assert sum(points_of(f"shopper{i}@shop.example") for i in range(7)) == 7 * 310


def test_a_passing_database_error_takes_the_event_again_instead_of_failing_it(order_rule, monkeypatch):
    event = kept(shopify_paid(3001, "retry@shop.example"))
    real_apply, calls = services._apply, []

    def deadlocked_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("deadlock detected")
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(services, "_apply", deadlocked_once)

    services.events_drain()

    event.refresh_from_db()
    assert (event.status, event.attempts, event.error) == (EventStatus.PROCESSED, 1, "")
    assert points_of("retry@shop.example") == 310


def test_an_error_that_keeps_coming_back_marks_the_event_failed(order_rule, monkeypatch):
    event = kept(shopify_paid(3002, "stuck@shop.example"))
    monkeypatch.setattr(services, "_apply", lambda *a, **k: (_ for _ in ()).throw(OperationalError("lock timeout")))

    services.events_drain()

    event.refresh_from_db()
    assert (event.status, event.error) == (EventStatus.FAILED, "OperationalError: lock timeout")
    assert not LedgerEntry.objects.exists()


def test_earning_with_a_key_the_caller_calls_new_is_still_refused_twice(program):
    member = MemberFactory()
    system = SystemActor("tests")
    earn = {"member": member.pk, "points": 50, "reason": "order", "actor": system, "source": EntrySource.ORDER}
    points_earn(**earn, idempotency_key="order:1:rule:1")

    with pytest.raises(IntegrityError), transaction.atomic():
        points_earn(**earn, idempotency_key="order:1:rule:1", savepoint=False, key_is_new=True)

    member.refresh_from_db()
    assert (LedgerEntry.objects.count(), member.available_points) == (1, 50)
    assert points_earn(**earn, idempotency_key="order:1:rule:1").already_applied


class FakeRedis:
    def __init__(self):
        self.keys = {}

    def set(self, key, value, nx=False, ex=None):
        if nx and key in self.keys:
            return None
        self.keys[key] = value
        return True

    def delete(self, key):
        self.keys.pop(key, None)


def test_deliveries_queue_one_drain_until_it_starts(store, monkeypatch):
    fake, queued = FakeRedis(), []
    monkeypatch.setattr(queueing, "_flag", lambda: (fake, "flag"))
    monkeypatch.setattr("webhooks.tasks.drain_events.apply_async", lambda *args, **kwargs: queued.append(1))

    for i in range(3):
        store.shopify("orders/paid", shopify_paid(4000 + i, f"q{i}@shop.example"))
    assert len(queued) == 1
    assert WebhookEvent.objects.filter(status=EventStatus.RECEIVED).count() == 3

    queueing.drain_started()  # the drain begins: the next delivery must wake another one
    store.shopify("orders/paid", shopify_paid(4003, "q3@shop.example"))
    assert len(queued) == 2

    services.events_drain()
    assert WebhookEvent.objects.filter(status=EventStatus.PROCESSED).count() == 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_drains_at_once_never_process_an_event_twice(order_rule):
    orders = 120
    for i in range(orders):
        # Forty shoppers, so both drains lock the same members now and then.
        kept(shopify_paid(5000 + i, f"shopper{i % 40}@shop.example"))
    start, errors, counts = threading.Barrier(2), [], []

    def drain():
        try:
            start.wait()
            counts.append(services.events_drain(batch_size=10))
        except Exception as exc:
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert not any(thread.is_alive() for thread in threads), "a drain did not finish"
    assert errors == []
    assert len(counts) == 2, "both drains reported"
    assert all(count[EventStatus.PROCESSED] > 0 for count in counts), "both drains took a share"
    assert sum(count[EventStatus.PROCESSED] for count in counts) == orders
    assert set(WebhookEvent.objects.values_list("status", "attempts")) == {(EventStatus.PROCESSED, 1)}
    assert Order.objects.count() == LedgerEntry.objects.count() == orders
    assert sum(points_of(f"shopper{i}@shop.example") for i in range(40)) == orders * 310
