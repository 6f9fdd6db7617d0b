"""Imports app models: CSV upload jobs (import_job.py) and "Reward past actions" runs (backfill.py)."""

from .backfill import *  # noqa: F403
from .import_job import *  # noqa: F403
