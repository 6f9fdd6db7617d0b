"""What staff see (events, orders with their points, the ledger check) and the scheduled jobs."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from loyalty.actors import SystemActor
from loyalty.models import EntryKind, LedgerEntry, Member, Order, ProgramSettings
from loyalty.services import points_adjust
from loyalty.services.orders import order_apply
from loyalty.tasks import reconcile_ledger_nightly
from webhooks import parsers
from webhooks.models import EventStatus, WebhookEvent
from webhooks.tasks import retry_failed_events

from .conftest import recent

pytestmark = pytest.mark.django_db


def test_event_list_shows_topic_status_and_error(store, staff_client):
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    store.shopify("refunds/create", {"id": 1, "order_id": 42, "transactions": []})

    page = staff_client.get(reverse("admin:webhooks_webhookevent_changelist")).content.decode()

    assert "orders/paid" in page and "refunds/create" in page
    assert "Processed" in page and "Failed" in page
    assert "Order 42 has not arrived yet" in page


def test_event_page_shows_the_body(store, staff_client):
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    event = WebhookEvent.objects.get()
    page = staff_client.get(reverse("admin:webhooks_webhookevent_change", args=[event.pk])).content.decode()
    assert "5876543210987654321" in page
    assert "earned +310 (pending)" in page


def test_retry_action_processes_a_failed_event_once_its_cause_is_fixed(store, staff_client):
    store.shopify("refunds/create", recent("shopify/refunds_create_partial.json"))
    event = WebhookEvent.objects.get()
    assert event.status == EventStatus.FAILED
    # The order arrives by another way (a CSV import, say), so nothing queues the refund again.
    order_payload = recent("shopify/orders_paid.json")
    order_apply(facts=parsers.shopify_order(order_payload), actor=SystemActor("tests"))

    with store.capture(execute=True):
        response = staff_client.post(
            reverse("admin:webhooks_webhookevent_changelist"),
            {"action": "retry_events", "_selected_action": [event.pk]},
            follow=True,
        )

    assert "Queued 1 event again." in response.content.decode()
    event.refresh_from_db()
    assert (event.status, event.attempts) == (EventStatus.PROCESSED, 2)
    assert LedgerEntry.objects.get(kind=EntryKind.REVERSAL).points == -142  # floor(310 x 142.50 / 310)


def test_retry_leaves_processed_events_alone(store, staff_client):
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    event = WebhookEvent.objects.get()
    response = staff_client.post(
        reverse("admin:webhooks_webhookevent_changelist"),
        {"action": "retry_events", "_selected_action": [event.pk]},
        follow=True,
    )
    assert "1 event was left alone: it was already processed or ignored." in response.content.decode()


def test_order_page_shows_what_it_earned_and_what_was_taken_back(store, order_rule, staff_client, system):
    order_rule.hold_days = 0
    order_rule.save()
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    store.shopify("refunds/create", recent("shopify/refunds_create_shipping_only.json"))
    points_adjust(member=Member.objects.get(), points=-290, reason="Spent", actor=system)
    store.shopify("orders/cancelled", recent("shopify/orders_cancelled.json"))
    order = Order.objects.get()

    page = staff_client.get(reverse("admin:loyalty_order_change", args=[order.pk])).content.decode()

    assert "Earned: <strong>310</strong> (pending: 0) · Taken back: <strong>20</strong>" in page
    assert 'Not recovered (already spent, recorded as a shortfall): <strong class="not-recovered">290</strong>' in page
    assert "Points go back because the order is cancelled." in page

    listing = staff_client.get(reverse("admin:loyalty_order_changelist")).content.decode()
    assert "#1042" in listing
    assert '<td class="field-points_earned">310</td>' in listing
    assert '<td class="field-points_taken_back">20</td>' in listing
    assert '<td class="field-points_not_recovered">290</td>' in listing


def test_order_page_says_why_an_order_earned_nothing(store, staff_client):
    store.shopify("orders/paid", recent("shopify/orders_paid_test.json"))
    order = Order.objects.get()
    page = staff_client.get(reverse("admin:loyalty_order_change", args=[order.pk])).content.decode()
    assert "Earns nothing: a test order earns nothing." in page


def test_failed_ledger_check_is_shown_on_the_order_and_event_lists(staff_client, program):
    program.last_reconcile_at = timezone.now()
    program.last_reconcile_ok = False
    program.last_reconcile_report = "member #1 x@y: available is 5 but the ledger says 0"
    program.save()
    for url in ("admin:loyalty_order_changelist", "admin:webhooks_webhookevent_changelist"):
        page = staff_client.get(reverse(url)).content.decode()
        assert "found differences between members' balances and the ledger" in page


def test_clean_ledger_check_shows_no_warning(staff_client, program):
    reconcile_ledger_nightly()
    assert ProgramSettings.load().last_reconcile_ok is True
    page = staff_client.get(reverse("admin:loyalty_order_changelist")).content.decode()
    assert "found differences" not in page


def test_sweep_retries_failed_and_lost_events(store, order_rule):
    store.shopify("refunds/create", recent("shopify/refunds_create_partial.json"))
    waiting = WebhookEvent.objects.get()
    # An order whose task never ran (the broker was down when it arrived).
    lost = WebhookEvent.objects.create(
        store="shopify",
        topic="orders/paid",
        delivery_id="webhook:lost-1",
        body=json.dumps(recent("shopify/orders_paid.json")),
        order_ref="5876543210987654321",
        received_at=timezone.now() - timedelta(minutes=20),
    )

    counts = retry_failed_events()

    lost.refresh_from_db()
    waiting.refresh_from_db()
    assert lost.status == EventStatus.PROCESSED
    assert waiting.status == EventStatus.PROCESSED
    assert counts["retried"] == 2
    assert sorted(LedgerEntry.objects.values_list("points", flat=True)) == [-142, 310]


def test_sweep_gives_up_after_ten_attempts(store):
    store.shopify("refunds/create", {"id": 1, "order_id": 42, "transactions": []})
    WebhookEvent.objects.update(attempts=10)
    assert retry_failed_events()["retried"] == 0


def test_setup_periodic_tasks_schedules_the_jobs(db):
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    release = PeriodicTask.objects.get(task="loyalty.release_matured_pending")
    assert (release.interval.every, release.interval.period) == (10, "minutes")
    sweep = PeriodicTask.objects.get(task="webhooks.retry_failed_events")
    assert (sweep.interval.every, sweep.enabled) == (15, True)
    nightly = PeriodicTask.objects.get(task="loyalty.reconcile_ledger_nightly")
    assert (nightly.crontab.hour, nightly.crontab.minute) == ("3", "0")


def test_settle_points_action_credits_an_order_after_its_way_to_earn_is_switched_on(store, order_rule, staff_client):
    order_rule.active = False
    order_rule.save()
    store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    assert not LedgerEntry.objects.exists()
    order_rule.active = True
    order_rule.save()

    response = staff_client.post(
        reverse("admin:loyalty_order_changelist"),
        {"action": "settle_points", "_selected_action": [Order.objects.get().pk]},
        follow=True,
    )

    assert "Queued 1 order to settle its points." in response.content.decode()
    assert LedgerEntry.objects.get().points == 310
