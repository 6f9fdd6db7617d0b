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
