"""Helpers to deliver signed webhooks the way Shopify and WooCommerce do, from the payloads in fixtures/."""

import base64
import copy
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from loyalty.models import ProgramSettings
from tests.factories import EarnRuleFactory

FIXTURES = Path(__file__).parent / "fixtures"
SHOPIFY_SECRET = "shpss_test_4b9c0c1f2e3d"
WOO_SECRET = "wc-secret: with spaces & symbols"
DATE_FIELDS = (
    "created_at",
    "processed_at",
    "updated_at",
    "cancelled_at",
    "closed_at",
    "date_created_gmt",
    "date_modified_gmt",
    "date_paid_gmt",
    "date_completed_gmt",
)


def load(name: str) -> dict:
    """A fixture payload, ids exact (Python's json keeps big integers whole)."""
    return json.loads((FIXTURES / name).read_text())


def moved(payload: dict, delta: timedelta) -> dict:
    """The payload with every date moved by delta (so the fixtures' orders can be placed "an hour ago")."""
    payload = copy.deepcopy(payload)

    def move(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in DATE_FIELDS and isinstance(value, str) and value:
                    node[key] = (datetime.fromisoformat(value) + delta).isoformat()
                else:
                    move(value)
        elif isinstance(node, list):
            for item in node:
                move(item)

    move(payload)
    return payload


def recent(name: str, *, placed_ago: timedelta = timedelta(hours=1)) -> dict:
    """The fixture, its order placed `placed_ago` before now and its other dates moved along."""
    payload = load(name)
    anchor = payload.get("created_at") or payload.get("date_created_gmt")
    placed = datetime.fromisoformat(anchor)
    if placed.tzinfo is None:
        placed = placed.replace(tzinfo=UTC)  # WooCommerce's *_gmt dates
    return moved(payload, timezone.now() - placed_ago - placed)


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def body_of(payload) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


class Store:
    """Delivers webhooks through the test client; `on_commit` work (the Celery task, eager) runs as it would."""

    def __init__(self, client, capture):
        self.client = client
        self.capture = capture

    def shopify(self, topic: str, payload, *, webhook_id: str | None = None, secret=SHOPIFY_SECRET, headers=None):
        body = body_of(payload)
        extra = {
            "HTTP_X_SHOPIFY_TOPIC": topic,
            "HTTP_X_SHOPIFY_HMAC_SHA256": sign(body, secret),
            "HTTP_X_SHOPIFY_SHOP_DOMAIN": "northwind-outdoor.myshopify.com",
            "HTTP_X_SHOPIFY_API_VERSION": "2025-07",
            "HTTP_X_SHOPIFY_WEBHOOK_ID": webhook_id or str(uuid.uuid4()),
            "HTTP_X_SHOPIFY_TRIGGERED_AT": timezone.now().isoformat(),
        }
        extra.update(headers or {})
        return self._post("/webhooks/shopify/", body, extra)

    def woocommerce(self, topic: str, payload, *, secret=WOO_SECRET, headers=None):
        body = body_of(payload)
        resource, event = topic.split(".", 1) if "." in topic else (topic, "")
        extra = {
            "HTTP_X_WC_WEBHOOK_SOURCE": "https://boutique.example/",
            "HTTP_X_WC_WEBHOOK_TOPIC": topic,
            "HTTP_X_WC_WEBHOOK_RESOURCE": resource,
            "HTTP_X_WC_WEBHOOK_EVENT": event,
            "HTTP_X_WC_WEBHOOK_SIGNATURE": sign(body, secret),
            "HTTP_X_WC_WEBHOOK_ID": "12",
            "HTTP_X_WC_WEBHOOK_DELIVERY_ID": uuid.uuid4().hex,
        }
        extra.update(headers or {})
        return self._post("/webhooks/woocommerce/", body, extra)

    def _post(self, url, body, extra, content_type="application/json"):
        with self.capture(execute=True):
            return self.client.post(url, data=body, content_type=content_type, **extra)


@pytest.fixture
def program(db, tiers):
    """The demo's program: reverts on for all three statuses, 14 days' hold, "Place an order" at 1 point a unit."""
    program = ProgramSettings.load()
    program.program_started_at = timezone.now() - timedelta(days=365)
    program.hold_days_default = 14
    program.revert_enabled = True
    program.revert_on_cancelled = program.revert_on_refunded = program.revert_on_partially_refunded = True
    program.save()
    return program


@pytest.fixture
def order_rule(program):
    return EarnRuleFactory(name="Place an order", points_per_currency_unit=1, hold_days=14)


@pytest.fixture
def store(client, settings, django_capture_on_commit_callbacks, order_rule):
    settings.SHOPIFY_WEBHOOK_SECRET = SHOPIFY_SECRET
    settings.WOOCOMMERCE_WEBHOOK_SECRET = WOO_SECRET
    return Store(client, django_capture_on_commit_callbacks)


@pytest.fixture
def staff_client(client, manager):
    client.force_login(manager)
    return client
