"""Seconds per step of the bulk work, for the benchmarks: cheap timers that cost nothing unless a profile is open.

    with step_profile() as steps:
        import_job_apply(job_id=...)
    # steps == {"stage": 1.2, "resolve": 0.8, "entries": 3.1, ...}

The bulk path (loyalty/services/ledger_bulk.py) and the jobs that call it (imports' apply, Reward past actions) time
their steps with `step(name)`; nothing changes in what they do. Steps: parse (the file into rows), check (the rows
against the database), stage (postings into the staging table), resolve (keys, locks, the rulebook's decisions), entries
(ledger rows, status moves, shortfalls), tiers (tier changes), balances (the members' figures and tier), checks (the
commit: deferred foreign-key checks and the write-ahead log's flush), progress (a job's counters and chunk bounds).
"""

import time
from contextlib import contextmanager
from contextvars import ContextVar

_steps: ContextVar[dict | None] = ContextVar("bulk_step_profile", default=None)


@contextmanager
def step_profile():
    """Collect the seconds of every step run in the block (this thread), by name."""
    steps: dict[str, float] = {}
    token = _steps.set(steps)
    try:
        yield steps
    finally:
        _steps.reset(token)


def profiling() -> bool:
    return _steps.get() is not None


def add(name: str, seconds: float) -> None:
    steps = _steps.get()
    if steps is not None:
        steps[name] = steps.get(name, 0.0) + seconds


@contextmanager
def step(name: str):
    """Time the block as `name` when a profile is open (add to what that step already took)."""
    steps = _steps.get()
    if steps is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - start


def rounded(steps: dict[str, float], total: float | None = None) -> dict:
    """The steps in seconds (3 decimals), with what the job took outside them as "other" when `total` is given."""
    out = {name: round(seconds, 3) for name, seconds in steps.items()}
    if total is not None:
        out["other"] = round(max(0.0, total - sum(steps.values())), 3)
    return out
