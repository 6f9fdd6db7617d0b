"""Background work on orders: settle an order's points with today's rules (earn what is due, revert what must go)."""

from celery import shared_task

from ..actors import SystemActor
from ..services.orders import order_settle

SETTLE_JOB = SystemActor("order settle")


@shared_task(
    name="loyalty.order_settle",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=120,
    soft_time_limit=100,
)
def order_settle_task(order_id: int):
    """Safe to run twice: every effect on the ledger is keyed by order and rule (or refund)."""
    return str(order_settle(order=order_id, actor=SETTLE_JOB))
