"""A store delivering signed webhooks over HTTP to the running app, a real Celery worker on Redis doing the work."""

import json
import urllib.error
import urllib.request
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.models import EntryStatus, LedgerEntry, Member, ProgramSettings
from tests.factories import EarnRuleFactory
from tests.integration.conftest import wait_for
from tests.webhooks.conftest import SHOPIFY_SECRET, WOO_SECRET, recent, sign
from webhooks.models import EventStatus, WebhookEvent

pytestmark = pytest.mark.integration


def post(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def shopify(live_server, topic: str, payload: dict, *, webhook_id: str | None = None, secret=SHOPIFY_SECRET):
    body = json.dumps(payload).encode()
    headers = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign(body, secret),
        "X-Shopify-Shop-Domain": "northwind-outdoor.myshopify.com",
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
    }
    return post(f"{live_server.url}/webhooks/shopify/", body, headers)


def woocommerce(live_server, topic: str, payload: dict):
    body = json.dumps(payload).encode()
    headers = {
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Signature": sign(body, WOO_SECRET),
        "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,
    }
    return post(f"{live_server.url}/webhooks/woocommerce/", body, headers)


def available(email: str):
    member = Member.objects.filter(email=email).first()
    return member and (member.available_points, member.pending_points, member.lifetime_points)


@pytest.fixture
def live_program(transactional_db, settings, tiers):
    settings.SHOPIFY_WEBHOOK_SECRET = SHOPIFY_SECRET
    settings.WOOCOMMERCE_WEBHOOK_SECRET = WOO_SECRET
    program = ProgramSettings.load()
    program.program_started_at = timezone.now() - timedelta(days=365)
    program.save()
    return EarnRuleFactory(name="Place an order", points_per_currency_unit=1, hold_days=0)


def test_shopify_order_earns_and_reverts_through_the_worker(live_program, celery_worker_process, live_server):
    email = "bob.norman@mail.example.com"
    paid = recent("shopify/orders_paid.json")

    answers = [shopify(live_server, "orders/paid", paid, webhook_id="live-paid-1") for _ in range(3)]
    assert [a[1]["status"] for a in answers] == ["received", "already received", "already received"]
    assert wait_for(lambda: available(email) == (310, 0, 310), what="the worker to credit 310 points")

    assert shopify(live_server, "orders/paid", paid, secret="wrong")[0] == 401

    status, _ = shopify(live_server, "refunds/create", recent("shopify/refunds_create_partial.json"))
    assert status == 200
    # The refunded shoe's subtotal (142.50 of the 310.00 of goods), not the money with its tax (153.90).
    wait_for(lambda: available(email) == (168, 0, 168), what="the partial refund to take back 142")

    shopify(live_server, "orders/cancelled", recent("shopify/orders_cancelled.json"))
    wait_for(lambda: available(email) == (0, 0, 0), what="the cancellation to take back the rest")

    wait_for(
        lambda: not WebhookEvent.objects.exclude(status=EventStatus.PROCESSED).exists(),
        what="every event processed",
    )
    assert WebhookEvent.objects.count() == 3
    assert sorted(LedgerEntry.objects.values_list("points", flat=True)) == [-168, -142, 310]


def test_woocommerce_order_held_then_cancelled_through_the_worker(live_program, celery_worker_process, live_server):
    live_program.hold_days = 14
    live_program.save()
    email = "jeanne.dupont@exemple.example"
    assert woocommerce(live_server, "order.created", recent("woocommerce/order_created.json"))[0] == 200
    wait_for(lambda: available(email) == (0, 40, 0), what="40 pending points")

    assert woocommerce(live_server, "order.updated", recent("woocommerce/order_updated_cancelled.json"))[0] == 200
    wait_for(lambda: available(email) == (0, 0, 0), what="the pending points to be rejected")
    assert LedgerEntry.objects.get().status == EntryStatus.REJECTED
