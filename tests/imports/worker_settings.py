"""Settings of the Celery worker the import fault test starts: small chunks, so a kill lands mid-apply."""

from tests.settings import *  # noqa: F403

IMPORT_CHUNK_ROWS = 5_000
