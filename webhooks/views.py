"""The store's webhook endpoints: check the signature, keep the delivery, answer at once; a Celery task does the rest.

Answers, so a store's delivery log reads clearly:
* 200 "received" (queued), "already received" (a re-sent delivery: nothing changes), "ignored" (a topic the program
  does not need), "ping" (WooCommerce's unsigned check when a webhook is saved);
* 400 with the reason when a signed delivery cannot be read (bad JSON, a missing field, an unknown topic): it is kept
  as a failed event for the admin, so the store's retries of it get 200 "already received";
* 401 for a missing or wrong signature (nothing kept, a log line); 413 for a body over WEBHOOK_MAX_BODY_BYTES;
* 503 when the program cannot keep the delivery right now (the database is down): the store retries later.
"""

import base64
import hashlib
import hmac
import logging
import re

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, connection, transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from loyalty.models import Store

from . import parsers
from .models import EventStatus, WebhookEvent
from .queueing import drain_soon

log = logging.getLogger(__name__)

SIGNATURE_HEADER = {Store.SHOPIFY: "X-Shopify-Hmac-Sha256", Store.WOOCOMMERCE: "X-WC-Webhook-Signature"}
TOPIC_HEADER = {Store.SHOPIFY: "X-Shopify-Topic", Store.WOOCOMMERCE: "X-WC-Webhook-Topic"}
SECRET_SETTING = {Store.SHOPIFY: "SHOPIFY_WEBHOOK_SECRET", Store.WOOCOMMERCE: "WOOCOMMERCE_WEBHOOK_SECRET"}
KEPT_HEADERS = (
    "X-Shopify-Topic",
    "X-Shopify-Shop-Domain",
    "X-Shopify-API-Version",
    "X-Shopify-Webhook-Id",
    "X-Shopify-Event-Id",
    "X-Shopify-Triggered-At",
    "X-WC-Webhook-Source",
    "X-WC-Webhook-Topic",
    "X-WC-Webhook-ID",
    "X-WC-Webhook-Delivery-ID",
)
WOO_PING = re.compile(rb"^webhook_id=\d+$")


def _answer(status: str, http_status: int = 200, reason: str = "", **extra) -> JsonResponse:
    data = {"status": status, **({"reason": reason} if reason else {}), **extra}
    return JsonResponse(data, status=http_status)


@csrf_exempt
@require_POST
def shopify(request):
    return receive(request, Store.SHOPIFY)


@csrf_exempt
@require_POST
def woocommerce(request):
    return receive(request, Store.WOOCOMMERCE)


def receive(request, store: str) -> JsonResponse:
    try:
        return _receive(request, store)
    except Exception:
        # Never a 500 page: the store gets a plain "try again later" and the traceback goes to the log.
        log.exception("%s webhook: could not keep the delivery", store)
        return _answer("error", 503, "The delivery could not be kept right now; please retry.")


def _receive(request, store: str) -> JsonResponse:
    body = _read_body(request)
    if body is None:
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        return _answer("refused", 413, f"The body is larger than {limit:,} bytes.")
    signature = request.headers.get(SIGNATURE_HEADER[store], "")
    if store == Store.WOOCOMMERCE and not signature and WOO_PING.match(body.strip()):
        log.info("woocommerce webhook ping: %s", body[:40].decode("ascii", "replace"))
        return _answer("ping")
    if not signature_is_valid(store, body, signature):
        log.warning(
            "%s webhook refused: %s signature (topic %r, from %s, %s bytes)",
            store,
            "wrong" if signature else "no",
            request.headers.get(TOPIC_HEADER[store], ""),
            request.META.get("REMOTE_ADDR", "?"),
            len(body),
        )
        return _answer("refused", 401, "The signature does not match.")
    return _keep(request, store, body)


def _read_body(request) -> bytes | None:
    """The raw body, or None when it is over the limit (refused before reading it where the length is announced)."""
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
            return None
        body = request.body
    except (ValueError, RequestDataTooBig):
        return None
    return None if len(body) > limit else body


def signature_is_valid(store: str, body: bytes, signature: str) -> bool:
    """HMAC-SHA256 of the raw body with the store's secret, base64: compared in constant time."""
    secret = getattr(settings, SECRET_SETTING[store], "")
    if not secret:
        log.error("%s webhook: %s is not set, so no delivery can be trusted", store, SECRET_SETTING[store])
        return False
    if not signature:
        return False
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return hmac.compare_digest(expected, signature.strip().encode())


def _keep(request, store: str, body: bytes) -> JsonResponse:
    """Store the signed delivery; queue it when it can be processed, or keep it as failed with the reason."""
    topic = request.headers.get(TOPIC_HEADER[store], "").strip()
    payload, status, reason, ref = None, EventStatus.RECEIVED, "", ""
    kind = parsers.topic_kind(store, topic)
    try:
        payload = parsers.load_json(body)
        ref = parsers.order_ref(store, kind, payload)
        if not topic:
            raise parsers.PayloadError(f"Missing header {TOPIC_HEADER[store]}.")
        if parsers.parse(store, topic, payload).kind == parsers.IGNORE:
            status = EventStatus.IGNORED
    except parsers.PayloadError as exc:
        status, reason = EventStatus.FAILED, str(exc)
    event = _store_event(request, store, topic, body, payload, status, reason, ref)
    if event is None:
        return _answer("already received")
    if status == EventStatus.FAILED:
        log.warning("%s webhook %s kept as failed: %s", store, event.pk, reason)
        return _answer("failed", 400, reason, event=event.pk)
    return _answer(status, event=event.pk)


def _store_event(request, store, topic, body, payload, status, reason, ref) -> WebhookEvent | None:
    """The new event row (queued for processing after commit), or None when this delivery was kept before."""
    headers = {name: value for name in KEPT_HEADERS if (value := request.headers.get(name))}
    fields = {
        "store": store,
        "topic": topic[:64],
        "delivery_id": parsers.delivery_id(store, request.headers, payload, body),
        "order_ref": ref,
        "body": body.decode("utf-8", errors="replace"),
        "headers": headers,
        "status": status,
        "error": reason,
    }
    try:
        event = _insert(fields)
    except IntegrityError:
        return None
    if status == EventStatus.RECEIVED:
        # A drain task takes it with the other events received meanwhile: one commit serves a whole batch.
        transaction.on_commit(drain_soon)
    return event


def _insert(fields: dict) -> WebhookEvent:
    # One INSERT in autocommit is a single round trip (no BEGIN/COMMIT), which is what keeps the answer fast; inside
    # an outer transaction (tests), a savepoint keeps a duplicate's IntegrityError from spoiling it.
    if connection.in_atomic_block:
        with transaction.atomic():
            return WebhookEvent.objects.create(**fields)
    return WebhookEvent.objects.create(**fields)


def queue_event(event_id: int) -> None:
    """Hand the event to a worker; when the broker is down it stays "received" and the sweep picks it up."""
    from .tasks import process_event

    try:
        process_event.delay(event_id)
    except Exception:
        log.exception("webhook event %s kept but not queued; the sweep retries it", event_id)
