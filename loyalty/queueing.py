"""Queueing a background task by its name, so services never import the tasks that call them back."""

from celery import current_app


def queue_task(name: str, *args, **kwargs) -> None:
    """Send the registered task `name` (its `@shared_task(name=...)`) with these arguments.

    Looked up in the Celery app's registry (which discovers every app's tasks), so it honours the app's settings
    (eager in the unit tests, Redis in production). Call it from `transaction.on_commit`.
    """
    if name not in current_app.tasks:
        # Outside a worker, Celery imports the apps' tasks modules only when asked.
        current_app.autodiscover_tasks(force=True)
    current_app.tasks[name].apply_async(args=args, kwargs=kwargs)
