"""The ledger's daily totals (LedgerDay), kept up to date by beat for the dashboard and the liability report.

A day's totals are the effects that happened that day in the store's time zone, by entry kind and way to earn:
an entry made active moves available points, an entry made pending moves pending points, and a pending entry moved
later moves them again on the day it moved (to active: pending to available; rejected: out of pending). Summing the
days up to a date gives that date's available and pending points exactly, as the ledger's own sums would.

The stored totals reach a mark (LedgerDaysMark): every effect before it is stored, none after, and readers sum the
ledger only from the mark on (`totals_until`), a few minutes of entries after a refresh however big the day. A
refresh sums again from the mark's day to a new mark, the latest moment no transaction still in flight can write
before: entries carry the time their transaction took it, after that transaction began, so with the oldest open
transaction's start (PostgreSQL's pg_stat_activity, less a margin for clocks) as the mark, nothing committed later
can fall before it.
"""

from collections import defaultdict
from datetime import date, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Case, F, IntegerField, Q, Sum, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import rules
from ..models import (
    EntryKind,
    EntryStatus,
    ExpiryClockDay,
    LedgerDay,
    LedgerDaysMark,
    LedgerEntry,
    Member,
    PointsBatch,
)
from ..timezones import day_after, day_start, store_timezone
from .expiry import Policy

FIELDS = ("available", "pending", "credited", "debited", "entries")


def _sum_if(condition: Q, value=None):
    value = F("points") if value is None else value
    return Sum(Case(When(condition, then=value), default=Value(0), output_field=IntegerField()))


def ledger_day_rows(start: datetime | None = None, end: datetime | None = None) -> dict[tuple, dict]:
    """{(day, kind, earn_rule_id): totals} of the effects in [start, end) (all time when not given)."""
    zone = store_timezone()
    created_pending = Q(status_changed_at__isnull=False) | Q(status=EntryStatus.PENDING)
    made = LedgerEntry.objects.all()
    moved = LedgerEntry.objects.filter(status_changed_at__isnull=False)
    if start is not None:
        made, moved = made.filter(created_at__gte=start), moved.filter(status_changed_at__gte=start)
    if end is not None:
        made, moved = made.filter(created_at__lt=end), moved.filter(status_changed_at__lt=end)
    found: dict[tuple, dict] = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
    active_now = ~created_pending
    for row in (
        made.annotate(day=TruncDate("created_at", tzinfo=zone))
        .values("day", "kind", "earn_rule_id")
        .annotate(
            available=_sum_if(active_now),
            pending=_sum_if(created_pending),
            credited=_sum_if(active_now & Q(points__gt=0)),
            debited=_sum_if(active_now & Q(points__lt=0), -F("points")),
            entries=Sum(Value(1, output_field=IntegerField())),
        )
        .order_by()
    ):
        _add(found, row)
    became_active = Q(status=EntryStatus.ACTIVE)
    for row in (
        moved.annotate(day=TruncDate("status_changed_at", tzinfo=zone))
        .values("day", "kind", "earn_rule_id")
        .annotate(
            available=_sum_if(became_active),
            pending=Sum(-F("points")),
            credited=_sum_if(became_active & Q(points__gt=0)),
            debited=_sum_if(became_active & Q(points__lt=0), -F("points")),
        )
        .order_by()
    ):
        _add(found, row)
    return dict(found)


def _add(found, row, by_day: bool = True) -> None:
    key = (row["kind"], row["earn_rule_id"])
    totals = found[(row["day"], *key) if by_day else key]
    for name in FIELDS:
        totals[name] += int(row.get(name) or 0)


# Seconds between the application's clock, which stamps entries, and the database's, which stamps transactions.
CLOCK_MARGIN_S = 2
# SQLite keeps no list of open transactions: its mark trails the refresh by this many seconds instead.
SQLITE_MARK_LAG_S = 60
# The key of PostgreSQL's advisory lock one refresh of the daily totals holds at a time.
REFRESH_LOCK = 7_215_339_001
CLOCK_DAYS_LOCK = 7_215_339_002  # the expiry schedule's refresh


def stored_mark() -> datetime | None:
    """How far the stored daily totals reach (None: nothing stored yet, or stored under another store time zone than
    today's: readers sum the ledger until the next refresh sums every day again)."""
    found = LedgerDaysMark.objects.values_list("through", "zone").first()
    if found is None or found[1] != store_timezone().key:
        return None
    return found[0]


def _safe_mark() -> datetime:
    """The latest moment before which every effect is committed already. Read before the refresh's own transaction
    (PostgreSQL keeps one view of pg_stat_activity per transaction); the application's one database role sees the
    start of every transaction of its sessions there."""
    now = timezone.now()
    if connection.vendor != "postgresql":
        return now - timedelta(seconds=SQLITE_MARK_LAG_S)
    with connection.cursor() as cur:
        cur.execute(
            """SELECT MIN(xact_start) FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND backend_type = 'client backend' AND xact_start IS NOT NULL"""
        )
        oldest = cur.fetchone()[0]
    mark = now if oldest is None else min(now, oldest)
    return mark - timedelta(seconds=CLOCK_MARGIN_S)


def ledger_days_refresh(*, since: date | None = None) -> int:
    """Sum the ledger's days again from the stored mark's day (or `since`, if earlier) to a new mark; returns the days
    written. Safe to run at any time and twice at once (one refresh at a time: a lock of the database's own on
    PostgreSQL, taken even when no mark is stored yet; SQLite lets one writer at a time).

    The stored days are days of the store's time zone: under another zone than the mark's, every day is summed again.
    """
    mark = _safe_mark()
    zone = store_timezone()
    with transaction.atomic():
        # The mark's row cannot be the lock: before the first refresh there is none to lock, and two first
        # refreshes would each store every day.
        _lock_database(REFRESH_LOCK)
        held = LedgerDaysMark.objects.select_for_update().first()
        if held is not None and held.zone != zone.key:
            held = None  # the stored days are another zone's days: none of them holds
        days = [d for d in (since, held and held.through.astimezone(zone).date(), mark.astimezone(zone).date()) if d]
        # A mark earlier than the last one (a long transaction is open) sums again from its own day.
        start_day = min(days) if held else None
        if start_day is None:
            rows = ledger_day_rows(end=mark)
            LedgerDay.objects.all().delete()
        else:
            rows = ledger_day_rows(start=day_start(start_day), end=mark)
            LedgerDay.objects.filter(day__gte=start_day).delete()
        LedgerDay.objects.bulk_create(
            [LedgerDay(day=day, kind=kind, earn_rule_id=rule, **totals) for (day, kind, rule), totals in rows.items()],
            batch_size=2000,
        )
        LedgerDaysMark.objects.update_or_create(pk=1, defaults={"through": mark, "zone": zone.key})
    expiry_clock_days_refresh()
    return len({key[0] for key in rows})


def totals_until(until: date, *, since: date | None = None, by_day: bool = True) -> dict[tuple, dict]:
    """The effects of the days [since, until] (from the start when since is None), exact: the stored totals, and
    the ledger's own from the mark on. by_day: {(day, kind, earn_rule_id): totals}; else {(kind, earn_rule_id):
    totals} summed over the days (the stored part summed by the database)."""
    mark, rows = _stored_rows(until, since=since, by_day=by_day)
    found: dict[tuple, dict] = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
    for row in rows:
        _add(found, row, by_day)
    start = mark
    if since is not None:
        start = day_start(since) if start is None else max(start, day_start(since))
    end = day_after(until)
    if start is None or start < end:
        for (day, kind, rule), totals in ledger_day_rows(start=start, end=end).items():
            _add(found, {"day": day, "kind": kind, "earn_rule_id": rule, **totals}, by_day)
    return dict(found)


def _stored_rows(until: date, *, since: date | None, by_day: bool) -> tuple[datetime | None, list[dict]]:
    """The stored mark and the stored rows of the days [since, until], read as of one refresh.

    The mark and the rows are two statements, and a refresh may commit between them: the rows would then reach the
    new mark while the ledger is summed from the old one (the effects between the two counted twice, or missed when
    the new mark is the earlier one). A refresh writes its rows and its mark together, so rows read between two
    readings of the same mark are that mark's; else they are read again."""
    while True:
        mark = stored_mark()
        if mark is None:
            return None, []
        stored = LedgerDay.objects.filter(day__lte=until)
        if since is not None:
            stored = stored.filter(day__gte=since)
        if by_day:
            rows = list(stored.values("day", "kind", "earn_rule_id", *FIELDS))
        else:
            rows = list(stored.values("kind", "earn_rule_id").annotate(**{f: Sum(f) for f in FIELDS}).order_by())
        if stored_mark() == mark:
            return mark, rows


def open_points_by_clock_day_now(policy: Policy) -> list[tuple[date, int]]:
    """Open points by the day their expiry clock started: the batch's day (after earning), or the member's last
    activity (inactivity: the latest batch opened or the latest redemption)."""
    if not policy.expires:
        return []
    zone = store_timezone()
    if policy.policy == rules.EXPIRY_AFTER_EARNING:
        # The rulebook's SQL over the batch and its member (the join the member filter makes, under its table name).
        batch, member = PointsBatch._meta.db_table, Member._meta.db_table
        left = rules.batch_remaining_sql(
            through=f"{batch}.through", points=f"{batch}.points", spent=rules.batch_spent_sql(member)
        )
        rows = (
            PointsBatch.objects.filter(member__available_points__gt=0)
            .alias(left=RawSQL(left, []))
            .filter(left__gt=0)
            .annotate(day=TruncDate("earned_at", tzinfo=zone))
            .values("day")
            .annotate(points=Sum(RawSQL(left, [])))
            .order_by()
        )
        return [(r["day"], int(r["points"])) for r in rows]
    # Inactivity: all of a member's available points share one clock.
    sql = f"""
        SELECT m.available_points, l.last, r.last FROM loyalty_member m
        JOIN (SELECT member_id, MAX(earned_at) AS last FROM loyalty_pointsbatch GROUP BY member_id) l
             ON l.member_id = m.id
        LEFT JOIN (SELECT member_id, MAX(created_at) AS last FROM loyalty_ledgerentry
                   WHERE kind = '{EntryKind.REDEMPTION}' AND status = 'active' GROUP BY member_id) r
             ON r.member_id = m.id
        WHERE m.available_points > 0"""
    found: dict[date, int] = defaultdict(int)
    with connection.cursor() as cur:
        cur.execute(sql)
        for points, last_batch, last_redemption in cur.fetchall():
            last = max(t for t in (last_batch, last_redemption) if t is not None)
            if isinstance(last, str):  # SQLite hands back text
                last = parse_datetime(last)
            found[last.astimezone(zone).date()] += int(points)
    return list(found.items())


def expiry_clock_days_refresh() -> int:
    """Sum the open points by the day their expiry clock started, under the policy in force (the liability report's
    expiry schedule reads these rows); returns the days written."""
    policy = Policy.of()
    rows = open_points_by_clock_day_now(policy)
    now = timezone.now()
    with transaction.atomic():
        # One at a time (the nightly run's refresh and beat's hourly one may meet): two would each delete the old
        # rows and insert theirs, and the schedule would count every day twice.
        _lock_database(CLOCK_DAYS_LOCK)
        ExpiryClockDay.objects.all().delete()
        ExpiryClockDay.objects.bulk_create(
            [
                ExpiryClockDay(policy=policy.signature, clock_day=day, points=points, computed_at=now)
                for day, points in rows
            ]
            or [ExpiryClockDay(policy=policy.signature, clock_day=now.date(), points=0, computed_at=now)],
            batch_size=2000,
        )
    return len(rows)


def after_expiry_run() -> None:
    """After an expiry run that posted expirations (the nightly job, `expire_points`): bring the daily totals and the
    expiry schedule up to date, so the dashboard and the liability report show the run at once."""
    ledger_days_refresh()


def _lock_database(key: int) -> None:
    """Hold PostgreSQL's advisory lock `key` until the transaction ends (SQLite lets one writer at a time anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [key])
