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
from django.db import connection, transaction
from django.http import JsonResponse
from django.utils import timezone
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
    payload, status, reason, ref, result = None, EventStatus.RECEIVED, "", "", ""
    kind = parsers.topic_kind(store, topic)
    try:
        payload = parsers.load_json(body)
        ref = parsers.order_ref(store, kind, payload)
        if not topic:
            raise parsers.PayloadError(f"Missing header {TOPIC_HEADER[store]}.")
        parsed = parsers.parse(store, topic, payload)
        if parsed.kind == parsers.IGNORE:
            status, result = EventStatus.IGNORED, parsed.note or "not needed by the program"
    except parsers.PayloadError as exc:
        status, reason = EventStatus.FAILED, str(exc)
    except (TypeError, AttributeError, ValueError, ArithmeticError, KeyError, IndexError, RecursionError) as exc:
        # A signed body whose fields have the wrong shape (a string where an object belongs, "1e40" as a total): the
        # store would retry a 503 forever, so it is kept as failed with the reason, as any unreadable delivery is.
        status, reason = EventStatus.FAILED, f"A field has an unexpected value ({type(exc).__name__}: {exc})."[:500]
    event_id = _store_event(request, store, topic, body, payload, status, reason, ref, result)
    if event_id is None:
        return _answer("already received")
    if status == EventStatus.FAILED:
        log.warning("%s webhook %s kept as failed: %s", store, event_id, reason)
        return _answer("failed", 400, reason, event=event_id)
    return _answer(status, event=event_id)


def _store_event(request, store, topic, body, payload, status, reason, ref, result="") -> int | None:
    """The new event's id (queued for processing after commit), or None when this delivery was kept before."""
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
        "result": result[:500],
    }
    # PostgreSQL's text cannot hold NUL (a raw byte, or "\u0000" in an id): kept as U+FFFD, like a byte not UTF-8.
    fields = {
        name: value.replace("\x00", "\ufffd") if isinstance(value, str) else value for name, value in fields.items()
    }
    event_id = _insert(fields)
    if event_id is not None and status == EventStatus.RECEIVED:
        # A drain task takes it with the other events received meanwhile: one commit serves a whole batch.
        transaction.on_commit(drain_soon)
    return event_id


def _insert(fields: dict) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: the new row's id, or None for a delivery kept before.

    One statement in autocommit is a single round trip (no BEGIN/COMMIT), which is what keeps the answer fast; a
    re-sent delivery raises nothing (so no savepoint inside a caller's transaction), and no model instance is built.
    """
    meta, ops = WebhookEvent._meta, connection.ops
    values = {"result": "", **fields, "attempts": 0, "received_at": timezone.now()}
    params = [meta.get_field(name).get_db_prep_save(value, connection) for name, value in values.items()]
    columns = ", ".join(ops.quote_name(meta.get_field(name).column) for name in values)
    placeholders = ", ".join(["%s"] * len(values))
    unique = f"{ops.quote_name('store')}, {ops.quote_name('delivery_id')}"  # webhook_event_delivery_unique
    sql = (
        f"INSERT INTO {ops.quote_name(meta.db_table)} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT ({unique}) DO NOTHING RETURNING {ops.quote_name('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None
