"""Celery tasks of the loyalty app, one module per area; importing them here lets autodiscovery find them."""

from .ledger_jobs import reconcile_ledger_nightly, release_matured_pending

__all__ = ["reconcile_ledger_nightly", "release_matured_pending"]
