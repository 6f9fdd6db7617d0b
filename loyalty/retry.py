"""Retrying background jobs through passing database trouble.

A big job (an import chunk, a backfill range, a group action) locks many members in id order; a webhook batch or an
agent's action locks a few in another order. PostgreSQL then breaks the rare deadlock by aborting one transaction; a
lock wait can time out; a connection can drop. None of that is the job's fault, and every job here is safe to run
again (each posting is keyed, and the job's progress commits with its chunk), so the task retries with a growing
delay before it gives up and reports the job as failed.
"""

from django.db import InterfaceError, OperationalError

TRANSIENT_ERRORS = (OperationalError, InterfaceError)
RETRY_DELAYS_S = (5, 15, 45, 120, 300)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


def retry_if_transient(task, exc: BaseException) -> None:
    """Raise Celery's Retry for a passing database error while retries remain; else return (the caller fails)."""
    attempt = task.request.retries
    if is_transient(exc) and attempt < len(RETRY_DELAYS_S):
        raise task.retry(exc=exc, countdown=RETRY_DELAYS_S[attempt], max_retries=len(RETRY_DELAYS_S))
