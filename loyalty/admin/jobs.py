"""How the admin hands a "select all N" action to the background: the list's filter goes to a task, not N ids.

The tasks live in loyalty/tasks/admin_actions.py, where Celery's autodiscovery finds them.
"""

from django.db import transaction

from ..tasks.admin_actions import adjust_points_matching, entries_action_matching, give_reward_matching

__all__ = ["adjust_points_matching", "entries_action_matching", "give_reward_matching", "queue"]


def queue(task, **kwargs) -> None:
    """Queue once the request's transaction commits, so the worker sees what the request wrote."""
    transaction.on_commit(lambda: task.delay(**kwargs))
