"""Processing kept webhook events: parse the payload, hand the order to loyalty.services.orders, record the outcome."""

import logging
from datetime import timedelta
from functools import partial

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from loyalty.actors import SystemActor
from loyalty.errors import LoyaltyError
from loyalty.services.orders import order_apply, order_refunds_add

from . import parsers
from .models import EventStatus, WebhookEvent

log = logging.getLogger(__name__)

DONE = (EventStatus.PROCESSED, EventStatus.IGNORED)
# The sweep gives up on an event after this many attempts; the admin's "Retry" still works on it.
MAX_ATTEMPTS = 10


def event_process(event_id: int) -> WebhookEvent | None:
    """Apply one event; safe to run twice (the order's effects are keyed), a done event is left as it is."""
    event = WebhookEvent.objects.filter(pk=event_id).first()
    if event is None or event.status in DONE:
        return event
    actor = SystemActor(f"webhook: {event.get_store_display()} {event.topic} (event #{event.pk})")
    try:
        parsed = parsers.parse(event.store, event.topic, parsers.load_json(event.body.encode("utf-8")))
        with transaction.atomic():
            status, result, created = _apply(event, parsed, actor)
            _mark(event, status, result=result)
    except (parsers.PayloadError, LoyaltyError) as exc:
        _mark(event, EventStatus.FAILED, error=str(exc))
    except Exception as exc:
        log.exception("webhook event %s failed", event.pk)
        _mark(event, EventStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        if created:
            _retry_waiting(event)
    return event


def _apply(event: WebhookEvent, parsed: parsers.ParsedEvent, actor) -> tuple[str, str, bool]:
    if parsed.kind == parsers.IGNORE:
        return EventStatus.IGNORED, "not needed by the program", False
    if parsed.kind == parsers.REFUND:
        outcome = order_refunds_add(
            store=event.store, store_order_id=parsed.store_order_id, refunds=parsed.refunds, actor=actor
        )
    else:
        outcome = order_apply(facts=parsed.order, actor=actor)
    return EventStatus.PROCESSED, str(outcome), outcome.created


def _mark(event: WebhookEvent, status: str, *, result: str = "", error: str = "") -> None:
    now = timezone.now()
    WebhookEvent.objects.filter(pk=event.pk).update(
        status=status,
        result=result[:500],
        error=error,
        attempts=F("attempts") + 1,
        processed_at=now if status in DONE else None,
    )
    event.status, event.result, event.error, event.attempts = status, result[:500], error, event.attempts + 1
    event.processed_at = now if status in DONE else None


def _retry_waiting(event: WebhookEvent) -> None:
    """Refunds that came before their order failed with "not arrived yet": now the order is here, retry them."""
    waiting = list(
        WebhookEvent.objects.filter(store=event.store, order_ref=event.order_ref, status=EventStatus.FAILED)
        .exclude(pk=event.pk)
        .values_list("pk", flat=True)
    )
    for event_id in waiting:
        transaction.on_commit(partial(_queue, event_id))


def _queue(event_id: int) -> None:
    from .views import queue_event

    queue_event(event_id)


def events_retry(*, event_ids) -> int:
    """Queue the given events again (the admin's "Retry" action); done events are left alone. Returns how many."""
    ids = list(
        WebhookEvent.objects.filter(pk__in=list(event_ids))
        .exclude(status__in=DONE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for event_id in ids:
        _queue(event_id)
    return len(ids)


def events_due_for_retry(*, now=None, limit: int = 500) -> list[int]:
    """Failed events with attempts left, and events still "received" after a while (their task was lost)."""
    now = now or timezone.now()
    stale = now - timedelta(minutes=5)
    return list(
        WebhookEvent.objects.filter(
            Q(status=EventStatus.FAILED, attempts__lt=MAX_ATTEMPTS)
            | Q(status=EventStatus.RECEIVED, received_at__lt=stale)
        )
        .order_by("received_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def events_sweep(*, now=None, limit: int = 500) -> dict:
    """Retry what is due, in this process (the sweep is itself a task): returns counts by outcome."""
    counts = {"retried": 0, "processed": 0, "failed": 0}
    for event_id in events_due_for_retry(now=now, limit=limit):
        event = event_process(event_id)
        counts["retried"] += 1
        counts["failed" if event and event.status == EventStatus.FAILED else "processed"] += 1
    return counts
