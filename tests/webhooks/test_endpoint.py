"""What the store sees when it delivers: signatures, sizes, unreadable payloads, re-sent deliveries, the ping."""

import logging

import pytest

from loyalty.models import LedgerEntry, Order
from webhooks.models import EventStatus, WebhookEvent

from .conftest import SHOPIFY_SECRET, WOO_SECRET, body_of, load, recent, sign

pytestmark = pytest.mark.django_db


def test_signed_shopify_order_is_received_and_processed(store):
    response = store.shopify("orders/paid", recent("shopify/orders_paid.json"), webhook_id="b54557e4-bdd9-4b37")

    assert response.status_code == 200
    assert response.json()["status"] == "received"
    event = WebhookEvent.objects.get()
    assert (event.store, event.topic, event.status, event.attempts) == ("shopify", "orders/paid", "processed", 1)
    assert event.delivery_id == "webhook:b54557e4-bdd9-4b37"
    assert event.order_ref == "5876543210987654321"
    assert event.processed_at is not None
    assert event.headers["X-Shopify-Shop-Domain"] == "northwind-outdoor.myshopify.com"
    assert "earned +310 (pending)" in event.result


def test_wrong_signature_is_refused_with_401_and_only_a_log_line(store, caplog):
    body = body_of(recent("shopify/orders_paid.json"))
    with caplog.at_level(logging.WARNING, logger="webhooks.views"):
        response = store.client.post(
            "/webhooks/shopify/",
            data=body,
            content_type="application/json",
            HTTP_X_SHOPIFY_TOPIC="orders/paid",
            HTTP_X_SHOPIFY_HMAC_SHA256=sign(body, "not-the-app-secret"),
        )

    assert response.status_code == 401
    assert response.json()["reason"] == "The signature does not match."
    assert not WebhookEvent.objects.exists() and not Order.objects.exists()
    assert "shopify webhook refused: wrong signature (topic 'orders/paid'" in caplog.text


def test_a_body_changed_after_signing_is_refused(store):
    body = body_of(recent("shopify/orders_paid.json"))
    tampered = body.replace(b'"310.00"', b'"3100.00"')
    response = store.client.post(
        "/webhooks/shopify/",
        data=tampered,
        content_type="application/json",
        HTTP_X_SHOPIFY_TOPIC="orders/paid",
        HTTP_X_SHOPIFY_HMAC_SHA256=sign(body, SHOPIFY_SECRET),
    )
    assert response.status_code == 401
    assert not WebhookEvent.objects.exists()


def test_missing_signature_is_refused(store):
    response = store.client.post(
        "/webhooks/shopify/", data=b"{}", content_type="application/json", HTTP_X_SHOPIFY_TOPIC="orders/paid"
    )
    assert response.status_code == 401
    assert not WebhookEvent.objects.exists()


def test_nothing_is_trusted_while_the_secret_is_not_set(store, settings, caplog):
    settings.SHOPIFY_WEBHOOK_SECRET = ""
    with caplog.at_level(logging.ERROR, logger="webhooks.views"):
        response = store.shopify("orders/paid", recent("shopify/orders_paid.json"), secret="")
    assert response.status_code == 401
    assert "SHOPIFY_WEBHOOK_SECRET is not set" in caplog.text
    assert not WebhookEvent.objects.exists()


def test_body_over_the_limit_is_refused_with_413(store, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 4096
    response = store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    assert response.status_code == 413
    assert response.json()["reason"] == "The body is larger than 4,096 bytes."
    assert not WebhookEvent.objects.exists()


def test_signed_malformed_json_is_kept_as_failed_and_answered_400(store):
    response = store.shopify("orders/paid", b'{"id": 1, "total_price": ', webhook_id="w-broken")

    assert response.status_code == 400
    assert response.json()["reason"].startswith("The body is not JSON")
    event = WebhookEvent.objects.get()
    assert event.status == EventStatus.FAILED
    assert event.error.startswith("The body is not JSON")

    again = store.shopify("orders/paid", b'{"id": 1, "total_price": ', webhook_id="w-broken")
    assert (again.status_code, again.json()["status"]) == (200, "already received")
    assert WebhookEvent.objects.count() == 1


def test_signed_order_missing_a_field_is_answered_400_with_the_field(store):
    payload = recent("shopify/orders_paid.json")
    del payload["total_price"]
    response = store.shopify("orders/paid", payload)
    assert response.status_code == 400
    assert response.json()["reason"] == "Missing field total_price."
    assert WebhookEvent.objects.get().status == EventStatus.FAILED
    assert not Order.objects.exists()


def test_unknown_topic_is_answered_400(store):
    response = store.shopify("products/update", {"id": 632910392, "title": "IPod Nano - 8GB"})
    assert response.status_code == 400
    assert response.json()["reason"] == "Unknown topic 'products/update'."
    assert WebhookEvent.objects.get().error == "Unknown topic 'products/update'."


def test_deleted_order_topic_is_kept_as_ignored(store):
    response = store.shopify("orders/delete", {"id": 5876543210987654321})
    assert (response.status_code, response.json()["status"]) == (200, "ignored")
    assert WebhookEvent.objects.get().status == EventStatus.IGNORED


def test_woocommerce_creation_ping_gets_200_and_stores_nothing(store):
    response = store.client.post(
        "/webhooks/woocommerce/",
        data="webhook_id=12",
        content_type="application/x-www-form-urlencoded",
        HTTP_X_WC_WEBHOOK_ID="12",
    )
    assert (response.status_code, response.json()["status"]) == (200, "ping")
    assert not WebhookEvent.objects.exists()


def test_woocommerce_unsigned_order_is_refused(store):
    response = store.client.post(
        "/webhooks/woocommerce/",
        data=body_of(load("woocommerce/order_created.json")),
        content_type="application/json",
        HTTP_X_WC_WEBHOOK_TOPIC="order.created",
    )
    assert response.status_code == 401


def test_woocommerce_signature_uses_its_own_secret(store):
    payload = recent("woocommerce/order_created.json")
    assert store.woocommerce("order.created", payload, secret=SHOPIFY_SECRET).status_code == 401
    assert store.woocommerce("order.created", payload, secret=WOO_SECRET).status_code == 200


def test_get_is_not_allowed(client):
    assert client.get("/webhooks/shopify/").status_code == 405


def test_path_without_trailing_slash_works_too(store):
    body = body_of(recent("shopify/orders_paid.json"))
    response = store.client.post(
        "/webhooks/shopify",
        data=body,
        content_type="application/json",
        HTTP_X_SHOPIFY_TOPIC="orders/paid",
        HTTP_X_SHOPIFY_HMAC_SHA256=sign(body, SHOPIFY_SECRET),
    )
    assert response.status_code == 200


def test_same_delivery_three_times_credits_once(store):
    payload = recent("shopify/orders_paid.json")
    answers = [store.shopify("orders/paid", payload, webhook_id="7d3c0a52-0b1f").json()["status"] for _ in range(3)]

    assert answers == ["received", "already received", "already received"]
    assert WebhookEvent.objects.count() == 1
    assert list(LedgerEntry.objects.values_list("points", "status")) == [(310, "pending")]


def test_same_order_sent_again_under_new_delivery_ids_still_credits_once(store):
    # Shopify sends orders/create, orders/paid and orders/updated for one checkout, each a different delivery.
    payload = recent("shopify/orders_paid.json")
    for topic in ("orders/create", "orders/paid", "orders/updated"):
        assert store.shopify(topic, payload).json()["status"] == "received"

    assert WebhookEvent.objects.filter(status=EventStatus.PROCESSED).count() == 3
    assert LedgerEntry.objects.count() == 1


def test_database_trouble_is_a_503_not_a_500(store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("connection refused")

    monkeypatch.setattr("webhooks.views._store_event", broken)
    response = store.shopify("orders/paid", recent("shopify/orders_paid.json"))
    assert response.status_code == 503
    assert response.json()["reason"] == "The delivery could not be kept right now; please retry."


@pytest.mark.parametrize(
    ("field", "value"),
    [("customer", "abc"), ("refunds", "abc"), ("refunds", [1]), ("total_price", "1e30")],
)
def test_signed_shopify_order_with_a_field_of_the_wrong_shape_is_kept_as_failed(store, field, value):
    payload = recent("shopify/orders_paid.json")
    payload[field] = value
    response = store.shopify("orders/paid", payload)
    assert response.status_code == 400  # the store stops retrying; a 503 would be retried for days
    event = WebhookEvent.objects.get()
    assert event.status == EventStatus.FAILED and event.error
    assert response.json()["reason"] == event.error
    assert not Order.objects.exists()


def test_signed_body_nested_too_deep_is_kept_as_failed(store):
    response = store.shopify("orders/paid", b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400
    assert WebhookEvent.objects.get().status == EventStatus.FAILED


@pytest.mark.parametrize(("field", "value"), [("billing", "x"), ("total", "1e40")])
def test_signed_woocommerce_order_with_a_field_of_the_wrong_shape_is_kept_as_failed(store, field, value):
    payload = recent("woocommerce/order_created.json")
    payload[field] = value
    response = store.woocommerce("order.created", payload)
    assert response.status_code == 400
    assert WebhookEvent.objects.get().status == EventStatus.FAILED
    assert not Order.objects.exists()
