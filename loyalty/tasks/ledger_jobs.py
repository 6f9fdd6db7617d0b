"""Scheduled and background jobs of the loyalty app: each takes ids, loads rows and calls a service."""

import logging

from celery import shared_task
from django.utils import timezone

from ..models import ProgramSettings
from ..selectors import ledger_differences
from ..services import pending_release_matured

log = logging.getLogger(__name__)


@shared_task(
    name="loyalty.release_matured_pending",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=900,
    soft_time_limit=840,
)
def release_matured_pending():
    """Make pending points whose hold has ended available (every 10 minutes)."""
    result = pending_release_matured()
    log.info("released %s matured pending entries", result.posted)
    return result.posted


@shared_task(
    name="loyalty.reconcile_ledger_nightly",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=3600,
    soft_time_limit=3500,
)
def reconcile_ledger_nightly():
    """Check every cached figure against the ledger; a difference is logged and shown on the settings page."""
    differences = ledger_differences()
    report = "\n".join(map(str, differences))
    ProgramSettings.load()
    ProgramSettings.objects.filter(pk=1).update(
        last_reconcile_at=timezone.now(), last_reconcile_ok=not differences, last_reconcile_report=report
    )
    if differences:
        log.error("reconcile_ledger found %s differences:\n%s", len(differences), report)
    return len(differences)


@shared_task(
    name="loyalty.expire_points_daily",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=3600,
    soft_time_limit=3500,
)
def expire_points_daily():
    """Expire what is due today (keyed per member and day: a retried or repeated run posts nothing twice), then
    bring the dashboard's daily totals up to date."""
    from ..services.expiry import points_expire
    from ..services.totals import after_expiry_run, ledger_days_refresh

    run = points_expire()
    log.info("expiry run: %s", run.summary())
    after_expiry_run() if run.posted else ledger_days_refresh()
    return run.posted


@shared_task(
    name="loyalty.ledger_days_refresh",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=1800,
    soft_time_limit=1700,
)
def ledger_days_refresh_task():
    """Keep the dashboard's daily totals up to date (hourly: today's row and any day not summed yet)."""
    from ..services.totals import ledger_days_refresh

    return ledger_days_refresh()
