"""Two threads in the same step at once (PostgreSQL): each waits there for the other, unless the other is waiting
on a lock (held by the first: then it cannot arrive until the first goes on, which it then does at once)."""

import threading
import time

from django.db import connection

WAIT_S = 30


class SideBySide:
    """Call `meet()` in the step both threads should be in at once."""

    def __init__(self):
        self._arrived = 0
        self._guard = threading.Lock()
        self.met = False

    def meet(self) -> None:
        with self._guard:
            self._arrived += 1
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self._guard:
                if self._arrived >= 2:
                    self.met = True
                    return
            if _a_session_waits_on_a_lock():
                return
            time.sleep(0.05)


def _a_session_waits_on_a_lock() -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")  # the view is kept for the transaction otherwise
        cur.execute(
            """SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                              AND pid <> pg_backend_pid() AND wait_event_type = 'Lock')"""
        )
        return cur.fetchone()[0]
