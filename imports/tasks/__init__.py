"""Celery tasks of the imports app; importing them here lets autodiscovery find them."""

from . import backfill, import_job, sweep  # noqa: F401
