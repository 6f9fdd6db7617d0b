"""Processing kept webhook events: parse the payload, hand the order to loyalty.services.orders, record the outcome."""

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from loyalty.actors import SystemActor
from loyalty.errors import LoyaltyError
from loyalty.services.orders import SettleContext, order_apply, order_refunds_add, settle_context

from . import parsers
from .models import EventStatus, WebhookEvent
from .queueing import drain_soon, queue_event

log = logging.getLogger(__name__)

DONE = (EventStatus.PROCESSED, EventStatus.IGNORED)
OUTCOME_FIELDS = ["status", "result", "error", "attempts", "processed_at"]
# Events per transaction: one commit (one fsync) and one read of the program's settings serve them all.
BATCH_SIZE = 100
# A drain hands over to a fresh task after this long, far below the task's time limit.
DRAIN_SECONDS = 60
# A deadlock or lock timeout is retried this many times before the event is marked failed (the sweep goes on).
TRANSIENT_TRIES = 3
CREATED, DONE_NOW, AGAIN = "created", "done", "again"
# The sweep gives up on an event after this many attempts; the admin's "Retry" still works on it.
MAX_ATTEMPTS = 10


@dataclass
class Batch:
    """The events one transaction took, and those a passing database error left to take again."""

    events: list[WebhookEvent] = field(default_factory=list)
    again: list[int] = field(default_factory=list)


def events_drain(*, batch_size: int = BATCH_SIZE, max_seconds: float = DRAIN_SECONDS) -> Counter:
    """Process "received" events, oldest first, a batch per transaction, until none is left; returns counts by status.

    Drains may run side by side: each takes rows the others have not locked (SKIP LOCKED), so no event is processed
    twice. A drain hands over to a new one after `max_seconds`, far from the task's time limit.
    """
    counts, deadline, tries = Counter(), time.monotonic() + max_seconds, Counter()
    while True:
        batch = events_process_batch(batch_size=batch_size, tries=tries)
        counts.update(event.status for event in batch.events if event.pk not in batch.again)
        # A short batch means nothing is left, unless it left an event "received" to take again.
        if len(batch.events) < batch_size and not batch.again:
            return counts
        if time.monotonic() > deadline:
            _drain_soon()
            return counts


def event_process(event_id: int) -> WebhookEvent | None:
    """Apply one event; safe to run twice (the order's effects are keyed), a done event is left as it is."""
    tries = Counter()
    for _attempt in range(TRANSIENT_TRIES):
        batch = events_process_batch(event_ids=[event_id], tries=tries)
        if not batch.again:
            break
    # Not taken: done already, or a drain holds it right now (and applies it).
    return batch.events[0] if batch.events else WebhookEvent.objects.filter(pk=event_id).first()


def events_process_batch(*, batch_size: int = BATCH_SIZE, event_ids=None, tries: Counter | None = None) -> Batch:
    """Take a batch of events (the given ones, else the oldest received) and apply them in one transaction.

    One commit serves the whole batch. It first runs without a savepoint per event; should any event fail, that
    transaction is rolled back and the batch runs again with a savepoint per event, so the failing one is marked
    failed with its error and the others stand. An event hit by a passing database error (a deadlock with another
    drain, the same new order or shopper created by another worker a moment ago) is left as it was, to be taken
    again, up to TRANSIENT_TRIES times.
    """
    tries = Counter() if tries is None else tries
    try:
        return _run_batch(batch_size, event_ids, tries, careful=False)
    except _Retry:
        # Something failed: that whole transaction was rolled back, and the batch runs again event by event.
        return _run_batch(batch_size, event_ids, tries, careful=True)


class _Retry(Exception):
    pass


def _run_batch(batch_size: int, event_ids, tries: Counter, *, careful: bool) -> Batch:
    """Apply a batch in one transaction. Careless: without a savepoint per event (two round trips fewer each), any
    failure raising _Retry; careful: each event in its own savepoint, failures recorded on the event."""
    batch = Batch()
    with transaction.atomic():
        batch.events = _take(batch_size, event_ids)
        if not batch.events:
            return batch
        context = settle_context(in_savepoint=True)
        apply = _process if careful else _process_carelessly
        outcomes = {event.pk: apply(event, context, tries) for event in batch.events}
        batch.again = [pk for pk, outcome in outcomes.items() if outcome == AGAIN]
        _save_outcomes([event for event in batch.events if outcomes[event.pk] != AGAIN])
        _retry_waiting([event for event in batch.events if outcomes[event.pk] == CREATED])
    return batch


def _take(batch_size: int, event_ids) -> list[WebhookEvent]:
    events = WebhookEvent.objects.select_for_update(skip_locked=True).defer("headers").order_by("pk")
    if event_ids is None:
        return list(events.filter(status=EventStatus.RECEIVED)[:batch_size])
    return list(events.filter(pk__in=list(event_ids)).exclude(status__in=DONE))


def _process_carelessly(event: WebhookEvent, context: SettleContext, tries: Counter) -> str:
    """Apply one event, no savepoint of its own: any exception is turned into _Retry for the careful pass."""
    actor = SystemActor(f"webhook: {event.get_store_display()} {event.topic} (event #{event.pk})")
    try:
        parsed = parsers.parse(event.store, event.topic, parsers.load_json(event.body.encode("utf-8")))
        status, result, created = _apply(event, parsed, actor, context)
    except Exception as exc:
        raise _Retry from exc
    _outcome(event, status, result=result)
    return CREATED if created else DONE_NOW


def _process(event: WebhookEvent, context: SettleContext, tries: Counter) -> str:
    """Apply one event in its own savepoint and set its outcome on it: CREATED (its order is new), DONE or AGAIN."""
    actor = SystemActor(f"webhook: {event.get_store_display()} {event.topic} (event #{event.pk})")
    try:
        parsed = parsers.parse(event.store, event.topic, parsers.load_json(event.body.encode("utf-8")))
        with transaction.atomic():
            status, result, created = _apply(event, parsed, actor, context)
    except (parsers.PayloadError, LoyaltyError) as exc:
        _outcome(event, EventStatus.FAILED, error=str(exc))
    except (OperationalError, IntegrityError) as exc:
        tries[event.pk] += 1
        if tries[event.pk] < TRANSIENT_TRIES:
            log.info("webhook event %s: %s; it is taken again", event.pk, exc)
            return AGAIN
        log.exception("webhook event %s failed", event.pk)
        _outcome(event, EventStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        log.exception("webhook event %s failed", event.pk)
        _outcome(event, EventStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        _outcome(event, status, result=result)
        return CREATED if created else DONE_NOW
    return DONE_NOW


def _apply(event: WebhookEvent, parsed: parsers.ParsedEvent, actor, context) -> tuple[str, str, bool]:
    if parsed.kind == parsers.IGNORE:
        return EventStatus.IGNORED, parsed.note or "not needed by the program", False
    if parsed.kind == parsers.REFUND:
        outcome = order_refunds_add(
            store=event.store,
            store_order_id=parsed.store_order_id,
            refunds=parsed.refunds,
            actor=actor,
            context=context,
        )
    else:
        outcome = order_apply(facts=parsed.order, actor=actor, context=context)
    return EventStatus.PROCESSED, str(outcome), outcome.created


def _outcome(event: WebhookEvent, status: str, *, result: str = "", error: str = "") -> None:
    event.status, event.result, event.error = status, result[:500], error
    event.attempts += 1
    event.processed_at = timezone.now() if status in DONE else None


def _save_outcomes(events: list[WebhookEvent]) -> None:
    """Write the batch's outcomes with one prepared UPDATE run for every event (psycopg pipelines the runs).

    The rows are locked by this transaction, so attempts + 1 is exact. (bulk_update's CASE expressions cost more to
    build than the processing they record.)
    """
    if not events:
        return
    ops = connection.ops
    table, columns = WebhookEvent._meta.db_table, [ops.quote_name(name) for name in OUTCOME_FIELDS]
    assignments = ", ".join(f"{column} = %s" for column in columns)
    sql = f"UPDATE {ops.quote_name(table)} SET {assignments} WHERE {ops.quote_name('id')} = %s"
    rows = [
        (e.status, e.result, e.error, e.attempts, ops.adapt_datetimefield_value(e.processed_at), e.pk) for e in events
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _retry_waiting(created: list[WebhookEvent]) -> None:
    """Refunds that came before their order failed with "not arrived yet": now the order is here, retry them."""
    refs = {}
    for event in created:
        refs.setdefault(event.store, []).append(event.order_ref)
    for store, order_refs in refs.items():
        # Failed events are few: the status index finds them, the order refs filter them (one query per store).
        waiting = WebhookEvent.objects.filter(status=EventStatus.FAILED, store=store, order_ref__in=order_refs)
        for event_id in waiting.order_by("pk").values_list("pk", flat=True):
            transaction.on_commit(partial(_queue, event_id))


def _queue(event_id: int) -> None:
    queue_event(event_id)


def _drain_soon() -> None:
    drain_soon()


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
    """Failed events with attempts left, and events still "received" after a while (their task was lost).

    A delivery refused at the endpoint (unreadable, an amount beyond what an order holds) was never kept for
    processing (its attempts are 0): reading it again cannot help, so only the admin's "Retry" takes it.
    """
    now = now or timezone.now()
    stale = now - timedelta(minutes=5)
    return list(
        WebhookEvent.objects.filter(
            Q(status=EventStatus.FAILED, attempts__gte=1, attempts__lt=MAX_ATTEMPTS)
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
