"""The ledger's daily totals (LedgerDay), kept up to date by beat for the dashboard and the liability report.

A day's totals are the effects that happened that day in the store's time zone, by entry kind and way to earn:
an entry made active moves available points, an entry made pending moves pending points, and a pending entry moved
later moves them again on the day it moved (to active: pending to available; rejected: out of pending). Summing the
days up to a date gives that date's available and pending points exactly, as the ledger's own sums would. A refresh
sums again the last stored day (it may have been partial) and every day after it; `ledger_day_rows` is the same sum
over any window, which the report uses for the days not stored yet.
"""

from collections import defaultdict
from datetime import date, datetime

from django.db import connection, transaction
from django.db.models import Case, F, IntegerField, Q, Sum, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import rules
from ..models import EntryKind, EntryStatus, ExpiryClockDay, LedgerDay, LedgerEntry, PointsBatch
from ..timezones import day_start, store_timezone
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


def _add(found, row) -> None:
    totals = found[(row["day"], row["kind"], row["earn_rule_id"])]
    for name in FIELDS:
        totals[name] += int(row.get(name) or 0)


def ledger_days_refresh(*, since: date | None = None) -> int:
    """Sum the ledger's days again from the last stored day (or `since`) to now; returns the days written."""
    last = LedgerDay.objects.order_by("-day").values_list("day", flat=True).first()
    start_day = since or last
    with transaction.atomic():
        if start_day is None:
            rows = ledger_day_rows()
            LedgerDay.objects.all().delete()
        else:
            rows = ledger_day_rows(start=day_start(start_day))
            LedgerDay.objects.filter(day__gte=start_day).delete()
        LedgerDay.objects.bulk_create(
            [LedgerDay(day=day, kind=kind, earn_rule_id=rule, **totals) for (day, kind, rule), totals in rows.items()],
            batch_size=2000,
        )
    expiry_clock_days_refresh()
    return len({key[0] for key in rows})


def open_points_by_clock_day_now(policy: Policy) -> list[tuple[date, int]]:
    """Open points by the day their expiry clock started: the batch's day (after earning), or the member's last
    activity (inactivity: the latest batch opened or the latest redemption)."""
    if not policy.expires:
        return []
    zone = store_timezone()
    if policy.policy == rules.EXPIRY_AFTER_EARNING:
        rows = (
            PointsBatch.objects.filter(remaining__gt=0)
            .annotate(day=TruncDate("earned_at", tzinfo=zone))
            .values("day")
            .annotate(points=Sum("remaining"))
            .order_by()
        )
        return [(r["day"], int(r["points"])) for r in rows]
    sql = f"""
        SELECT o.points, l.last, r.last FROM
            (SELECT member_id, SUM(remaining) AS points FROM loyalty_pointsbatch WHERE remaining > 0
             GROUP BY member_id) o
        JOIN (SELECT member_id, MAX(earned_at) AS last FROM loyalty_pointsbatch GROUP BY member_id) l
             ON l.member_id = o.member_id
        LEFT JOIN (SELECT member_id, MAX(created_at) AS last FROM loyalty_ledgerentry
                   WHERE kind = '{EntryKind.REDEMPTION}' AND status = 'active' GROUP BY member_id) r
             ON r.member_id = o.member_id"""
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


def stored_through() -> date | None:
    """The last day the stored totals reach (that day may be partial: readers sum it again from the ledger)."""
    return LedgerDay.objects.order_by("-day").values_list("day", flat=True).first()
