"""Imports admin: CSV upload jobs (import_job.py) and "Reward past actions" runs (backfill.py)."""

from . import backfill, import_job  # noqa: F401
