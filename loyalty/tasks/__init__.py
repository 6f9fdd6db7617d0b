"""Celery tasks of the loyalty app, one module per area; importing them here lets autodiscovery find them."""

from . import admin_actions  # noqa: F401  (the admin's "select all N" tasks)
from .groups import group_action_run_task, group_action_undo_task, rfm_refresh_task
from .ledger_jobs import (
    expire_points_daily,
    ledger_days_refresh_task,
    reconcile_ledger_nightly,
    release_matured_pending,
)
from .orders import order_settle_task

__all__ = [
    "expire_points_daily",
    "ledger_days_refresh_task",
    "group_action_run_task",
    "group_action_undo_task",
    "order_settle_task",
    "reconcile_ledger_nightly",
    "release_matured_pending",
    "rfm_refresh_task",
]
