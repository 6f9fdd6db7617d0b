"""Waking the drain: after a delivery is kept, make sure a drain task is on its way, without queueing one per event.

On a Redis broker a flag ("a drain is queued and has not started") stands for the queued task: the first delivery sets
it and queues a drain; later ones see it and queue nothing. The drain clears the flag before it looks for events, so a
delivery committed after that moment sets the flag again and queues the next drain, and no event is left waiting. The
flag expires, so a lost task costs at most FLAG_SECONDS (and the sweep picks up anything older than five minutes).
Without Redis (the filesystem broker, eager tasks in tests) every delivery queues a drain; an idle drain ends at once.
"""

import logging
import os

from django.db import connection

from loyalty.queueing import queue_task

log = logging.getLogger(__name__)

FLAG_SECONDS = 10
_client = {"pid": None, "redis": None}


def queue_event(event_id: int) -> None:
    """Hand the event to a worker; when the broker is down it stays "received" and the sweep picks it up."""
    try:
        queue_task("webhooks.process_event", event_id)
    except Exception:
        log.exception("webhook event %s kept but not queued; the sweep retries it", event_id)


def drain_soon() -> None:
    """Queue a drain unless one is already queued and not started (called after the delivery's commit)."""
    flag = _flag()
    try:
        if flag and not flag[0].set(flag[1], "1", nx=True, ex=FLAG_SECONDS):
            return
    except Exception:
        log.warning("webhooks: the drain flag could not be read; queueing a drain anyway", exc_info=True)
    try:
        queue_task("webhooks.drain_events")
    except Exception:
        log.exception("webhooks: a drain could not be queued; the sweep picks the events up")
        drain_started()


def drain_started() -> None:
    """Clear the flag: from now on a new delivery queues another drain."""
    flag = _flag()
    if not flag:
        return
    try:
        flag[0].delete(flag[1])
    except Exception:
        log.warning("webhooks: the drain flag could not be cleared; it expires in %ss", FLAG_SECONDS, exc_info=True)


def _flag():
    """(Redis client, key) when the broker is Redis and tasks really are queued; else None."""
    from config.celery import app

    # The Celery app's own settings (not Django's): they name the broker and queue the task really goes to.
    url = app.conf.broker_url or ""
    if app.conf.task_always_eager or not url.startswith(("redis://", "rediss://")):
        return None
    if _client["pid"] != os.getpid():  # a forked server or worker process makes its own connections
        import redis

        _client.update(pid=os.getpid(), redis=redis.Redis.from_url(url, socket_timeout=2))
    # One flag per queue and database: test runs and benchmarks sharing a Redis never suppress each other's drains.
    key = f"webhooks:drain-queued:{app.conf.task_default_queue}:{connection.settings_dict['NAME']}"
    return _client["redis"], key
