"""Background work of the webhooks: process one kept delivery; sweep up the failed and the lost ones."""

import logging

from celery import shared_task

from .queueing import drain_started
from .services import event_process, events_drain, events_sweep

log = logging.getLogger(__name__)


@shared_task(
    name="webhooks.process_event",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=120,
    soft_time_limit=100,
)
def process_event(event_id: int):
    """Apply one stored delivery to its order (safe to run twice)."""
    event = event_process(event_id)
    return event.status if event else None


@shared_task(
    name="webhooks.drain_events",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=300,
    soft_time_limit=280,
)
def drain_events():
    """Process every received event, a batch per transaction (safe to run twice, and side by side)."""
    drain_started()
    return dict(events_drain())


@shared_task(
    name="webhooks.retry_failed_events",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=1800,
    soft_time_limit=1700,
)
def retry_failed_events():
    """Every 15 minutes: retry failed deliveries with attempts left and deliveries whose task was lost."""
    counts = events_sweep()
    if counts["retried"]:
        log.info("webhook sweep: %s", counts)
    return counts
