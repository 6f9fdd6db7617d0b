"""Fuzzing the webhook endpoints and their parsers (hypothesis, bounded to run in seconds): random bytes and the
real payloads with fields swapped for garbage only ever get the product's own answer with a message (200 kept,
400 with the reason), never a 503 or a crash; what is kept as received can be processed (dates and amounts that the
database and Python both hold)."""

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhooks import parsers
from webhooks.models import WebhookEvent

from .conftest import SHOPIFY_SECRET, WOO_SECRET, load, sign

pytestmark = pytest.mark.django_db
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
PAYLOADS = {
    "shopify": [
        ("orders/paid", load("shopify/orders_paid.json")),
        ("refunds/create", load("shopify/refunds_create_partial.json")),
    ],
    "woocommerce": [("order.updated", load("woocommerce/order_updated_partial_refund.json"))],
}
SECRETS = {"shopify": SHOPIFY_SECRET, "woocommerce": WOO_SECRET}
HEADERS = {
    "shopify": ("HTTP_X_SHOPIFY_TOPIC", "HTTP_X_SHOPIFY_HMAC_SHA256"),
    "woocommerce": ("HTTP_X_WC_WEBHOOK_TOPIC", "HTTP_X_WC_WEBHOOK_SIGNATURE"),
}

garbage = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["1e40", "NaN", "-Infinity", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "1,234"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)


def _paths(node, prefix=()):
    """Every key path of a payload (into lists by index), so any field can be swapped."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node[:2]):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _swapped(payload, path, value):
    payload = copy.deepcopy(payload)
    node = payload
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return payload


@st.composite
def mutated(draw):
    store = draw(st.sampled_from(sorted(PAYLOADS)))
    topic, payload = draw(st.sampled_from(PAYLOADS[store]))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(list(_paths(payload))))
        payload = _swapped(payload, path, draw(garbage))
    return store, topic, json.dumps(payload).encode()


def _deliver(client, settings_, store, topic, body):
    settings_.SHOPIFY_WEBHOOK_SECRET, settings_.WOOCOMMERCE_WEBHOOK_SECRET = SHOPIFY_SECRET, WOO_SECRET
    topic_header, signature_header = HEADERS[store]
    extra = {topic_header: topic, signature_header: sign(body, SECRETS[store])}
    return client.post(f"/webhooks/{store}/", data=body, content_type="application/json", **extra)


def _assert_own_answer(response):
    assert response.status_code in (200, 400), (response.status_code, response.content[:300])
    answer = response.json()
    assert answer["status"] and (response.status_code == 200 or answer.get("reason")), answer


@FUZZ
@given(store=st.sampled_from(["shopify", "woocommerce"]), body=st.binary(max_size=3000))
def test_random_bytes_get_the_products_own_answer(client, settings, store, body):
    _assert_own_answer(
        _deliver(client, settings, store, "orders/paid" if store == "shopify" else "order.updated", body)
    )


@FUZZ
@given(delivery=mutated())
def test_real_payloads_with_garbage_fields_are_kept_or_refused_with_the_reason(client, settings, delivery):
    store, topic, body = delivery
    response = _deliver(client, settings, store, topic, body)
    _assert_own_answer(response)
    if response.status_code == 200 and response.json()["status"] == "received":
        parsed = parsers.parse(store, topic, parsers.load_json(body))
        if parsed.order:
            assert 1900 <= parsed.order.placed_at.year <= 2100
            assert parsed.order.total.is_finite()
        event = WebhookEvent.objects.order_by("-pk").first()
        assert event.status == "received"


def test_a_body_nested_100000_deep_is_refused_with_the_reason(client, settings):
    body = b'{"id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = _deliver(client, settings, "shopify", "orders/paid", body)
    assert response.status_code == 400


@pytest.mark.parametrize("body", [b"\x00", b'{"id": "12\\u0000", "total_price": "1"}'])
def test_a_nul_in_the_body_or_an_id_is_kept_as_a_failed_event_not_a_503(client, settings, body):
    _assert_own_answer(_deliver(client, settings, "shopify", "orders/paid", body))
    assert "\x00" not in WebhookEvent.objects.get().body
