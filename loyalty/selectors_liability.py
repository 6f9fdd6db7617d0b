"""The program's liability on a date, and the dashboard's figures: reads over the ledger's daily totals.

Available and pending points on a date are sums of the ledger's effects up to the end of that day (store time zone):
the daily totals beat keeps (LedgerDay) up to their mark, and the ledger itself after it (services/totals.py). A past
date is therefore exact. By tier: today,
the members' cached figures (always equal to the ledger's sums: reconcile_ledger proves it) in their current tier;
a past date, each member's ledger sums at the end of that day in the tier their tier history gives for it. The expiry
schedule is that of the open batches (as beat last summed them, hourly), under the policy in force (what will
expire, month by month, from the date).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Sum

from tiers.models import Tier

from . import rules
from .models import EarnRule, EntryKind, ExpiryClockDay, Member, Order, PointsBatch, ProgramSettings
from .services.batches import open_batches
from .services.expiry import Policy
from .services.totals import open_points_by_clock_day_now, totals_until
from .timezones import day_after, day_start, store_timezone, store_today

KIND_LABELS = {
    EntryKind.ADJUSTMENT: "Adjustments",
    EntryKind.REDEMPTION: "Redemptions",
    EntryKind.REVERSAL: "Reversals",
    EntryKind.EXPIRATION: "Expirations",
    EntryKind.EARN: "Other earnings",
}


@dataclass
class Line:
    label: str
    available: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        return self.available + self.pending


@dataclass
class Liability:
    on: date
    point_value: Decimal
    currency: str
    available: int = 0
    pending: int = 0
    by_tier: list[Line] = field(default_factory=list)
    by_source: list[Line] = field(default_factory=list)
    due: int = 0  # expired by the date, waiting for the run
    expiring: list[tuple[date, int]] = field(default_factory=list)  # (first day of the month, points)
    policy: str = ""

    def value(self, points: int) -> Decimal:
        return (Decimal(points) * self.point_value).quantize(Decimal("0.01"))

    @property
    def total(self) -> int:
        return self.available + self.pending

    @property
    def value_total(self) -> Decimal:
        return self.value(self.total)

    @property
    def value_due(self) -> Decimal:
        return self.value(self.due)


def store_currency() -> str:
    return Order.objects.order_by("-placed_at").values_list("currency", flat=True).first() or "USD"


def liability_on(day: date | None = None) -> Liability:
    day = day or store_today()
    program = ProgramSettings.load()
    report = Liability(on=day, point_value=program.point_value, currency=store_currency())
    rule_names = dict(EarnRule.objects.values_list("id", "name"))
    sources: dict[str, Line] = {}
    # Totals by kind and way to earn, summed over the days: one row per (kind, rule) instead of per day.
    by_source = {
        key: (totals["available"], totals["pending"]) for key, totals in totals_until(day, by_day=False).items()
    }
    for (kind, rule), (available, pending) in by_source.items():
        label = rule_names.get(rule, f"Way to earn #{rule}") if kind == EntryKind.EARN and rule else KIND_LABELS[kind]
        line = sources.setdefault(label, Line(label))
        line.available += available
        line.pending += pending
        report.available += available
        report.pending += pending
    report.by_source = sorted(sources.values(), key=lambda line: -line.total)
    report.by_tier = _by_tier(day)
    _expiry_schedule(report, Policy.of(program))
    return report


def _by_tier(day: date) -> list[Line]:
    names = dict(Tier.objects.values_list("id", "name"))
    if day >= store_today():
        rows = Member.objects.values("tier_id").annotate(a=Sum("available_points"), p=Sum("pending_points")).order_by()
        found = [(r["tier_id"], int(r["a"] or 0), int(r["p"] or 0)) for r in rows]
    else:
        found = _by_tier_in_the_past(day_after(day))
    lines = [Line(names.get(tier, "No tier"), a, p) for tier, a, p in found if a or p]
    thresholds = dict(Tier.objects.values_list("name", "threshold"))
    return sorted(lines, key=lambda line: thresholds.get(line.label, -1))


def _by_tier_in_the_past(end) -> list[tuple]:
    sql = """
        SELECT CASE
                 WHEN EXISTS (SELECT 1 FROM tiers_tierchange c WHERE c.member_id = x.member_id AND c.created_at < %s)
                 THEN (SELECT c.to_tier_id FROM tiers_tierchange c WHERE c.member_id = x.member_id
                       AND c.created_at < %s ORDER BY c.created_at DESC, c.id DESC LIMIT 1)
                 WHEN EXISTS (SELECT 1 FROM tiers_tierchange c WHERE c.member_id = x.member_id)
                 THEN (SELECT c.from_tier_id FROM tiers_tierchange c WHERE c.member_id = x.member_id
                       ORDER BY c.created_at, c.id LIMIT 1)
                 ELSE m.tier_id END AS tier_id,
               SUM(x.available), SUM(x.pending)
        FROM (SELECT e.member_id,
                     SUM(CASE WHEN e.status = 'active' AND COALESCE(e.status_changed_at, e.created_at) < %s
                              THEN e.points ELSE 0 END) AS available,
                     SUM(CASE WHEN (e.status = 'pending' OR e.status_changed_at IS NOT NULL)
                               AND (e.status_changed_at IS NULL OR e.status_changed_at >= %s)
                              THEN e.points ELSE 0 END) AS pending
              FROM loyalty_ledgerentry e WHERE e.created_at < %s GROUP BY e.member_id) x
        JOIN loyalty_member m ON m.id = x.member_id
        GROUP BY 1"""
    with connection.cursor() as cur:
        cur.execute(sql, [end, end, end, end, end])
        return [(tier, int(a or 0), int(p or 0)) for tier, a, p in cur.fetchall()]


def _month(day: date) -> date:
    return day.replace(day=1)


def _expiry_schedule(report: Liability, policy: Policy) -> None:
    """What the open batches will expire in each of the 12 months from the report's date (and what is already due)."""
    report.policy = policy.describe()
    first = _month(report.on)
    months = [first]
    for _ in range(11):
        months.append(_month(months[-1] + timedelta(days=32)))
    buckets = dict.fromkeys(months, 0)
    due = 0
    for clock_day, points in open_points_by_clock_day(policy):
        expires = policy.expires_on(clock_day)
        if expires is None:
            continue
        if expires <= report.on:
            due += points
        elif _month(expires) in buckets:
            buckets[_month(expires)] += points
    report.expiring = list(buckets.items())
    # What the next run takes: the open points whose expiry day has come, from the same sums as the months (beat's,
    # refreshed hourly and after each run). Read live over the batches it would walk every due batch: seconds on
    # the eve of a run over a million members.
    report.due = due


def open_points_by_clock_day(policy: Policy) -> list[tuple[date, int]]:
    """Open points by the day their expiry clock started, as beat last summed them (ExpiryClockDay) for this policy,
    else summed now."""
    if not policy.expires:
        return []
    stored = list(ExpiryClockDay.objects.filter(policy=policy.signature).values_list("clock_day", "points"))
    if stored:
        return [(day, points) for day, points in stored if points]
    return open_points_by_clock_day_now(policy)


def liability_csv_rows(report: Liability):
    """The report as CSV rows: section, line, available, pending, total points, value."""
    yield ["section", "line", "available", "pending", "points", f"value ({report.currency})"]
    yield [
        "total",
        f"on {report.on.isoformat()}",
        report.available,
        report.pending,
        report.total,
        report.value(report.total),
    ]
    for line in report.by_tier:
        yield ["tier", line.label, line.available, line.pending, line.total, report.value(line.total)]
    for line in report.by_source:
        yield ["source", line.label, line.available, line.pending, line.total, report.value(line.total)]
    yield ["expiring", "due at the next run", "", "", report.due, report.value(report.due)]
    for month, points in report.expiring:
        yield ["expiring", f"{month:%Y-%m}", "", "", points, report.value(points)]


# ---------------------------------------------------------------------------------------------------------------
# The dashboard


@dataclass
class Dashboard:
    weeks: list[date] = field(default_factory=list)
    issued: list[int] = field(default_factory=list)
    redeemed: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    reverted: list[int] = field(default_factory=list)
    outstanding: list[int] = field(default_factory=list)  # available + pending at each week's end
    tiers: list[tuple[str, int]] = field(default_factory=list)
    sources: list[tuple[str, int]] = field(default_factory=list)
    imports: dict[str, int] = field(default_factory=dict)
    webhooks: dict[str, int] = field(default_factory=dict)


def dashboard_figures(*, weeks: int = 26) -> Dashboard:
    """Weekly points issued, redeemed, expired and reverted; the outstanding points at each week's end; members by
    tier; the top sources of points over the period; imports and webhook deliveries of the last 30 days."""
    today = store_today()
    start = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)  # a Monday
    board = Dashboard(weeks=[start + timedelta(weeks=i) for i in range(weeks)])
    empty = [0] * weeks
    board.issued, board.redeemed, board.expired, board.reverted, board.outstanding = (
        list(empty),
        list(empty),
        list(empty),
        list(empty),
        list(empty),
    )
    opening = _outstanding_before(start)
    rule_names = dict(EarnRule.objects.values_list("id", "name"))
    weekly_change = [0] * weeks
    sources: dict[str, int] = defaultdict(int)
    for (day, kind, rule), totals in totals_until(today, since=start).items():
        week = (day - start).days // 7
        if not 0 <= week < weeks:
            continue
        weekly_change[week] += totals["available"] + totals["pending"]
        if kind in (EntryKind.EARN, EntryKind.ADJUSTMENT):
            board.issued[week] += totals["credited"]
            if totals["credited"]:
                label = rule_names.get(rule, "Other earnings") if kind == EntryKind.EARN else "Adjustments"
                sources[label] += totals["credited"]
        if kind == EntryKind.REDEMPTION:
            board.redeemed[week] += totals["debited"]
        elif kind == EntryKind.EXPIRATION:
            board.expired[week] += totals["debited"]
        elif kind == EntryKind.REVERSAL:
            board.reverted[week] += totals["debited"]
    running = opening
    for i, change in enumerate(weekly_change):
        running += change
        board.outstanding[i] = running
    names = dict(Tier.objects.values_list("id", "name"))
    board.tiers = [
        (names.get(r["tier_id"], "No tier"), r["n"])
        for r in Member.objects.values("tier_id").annotate(n=Count("id")).order_by("tier_id")
    ]
    board.sources = sorted(sources.items(), key=lambda item: -item[1])[:8]
    board.imports, board.webhooks = _health(today)
    return board


def _outstanding_before(start: date) -> int:
    """Available plus pending points at the start of `start`."""
    totals = totals_until(start - timedelta(days=1), by_day=False).values()
    return sum(t["available"] + t["pending"] for t in totals)


def _health(today: date) -> tuple[dict[str, int], dict[str, int]]:
    from imports.models import ImportJob
    from webhooks.models import WebhookEvent

    since = day_start(today - timedelta(days=30))
    imports = dict(
        ImportJob.objects.filter(created_at__gte=since).values_list("status").annotate(n=Count("id")).order_by()
    )
    webhooks = dict(
        WebhookEvent.objects.filter(received_at__gte=since).values_list("status").annotate(n=Count("id")).order_by()
    )
    return imports, webhooks


# ---------------------------------------------------------------------------------------------------------------
# What members will see expire


EXPIRING_WINDOWS = (7, 30, 90)


def expiring_members_sql(days: int) -> tuple[str, list] | None:
    """A SELECT of (member_id, points): the points that will have expired by the run `days` days from today
    (what is due already included), under the policy in force. None when points never expire."""
    from .services.expiry import due_sql

    return due_sql(Policy.of(), store_today() + timedelta(days=days))


@dataclass
class BatchRow:
    batch: PointsBatch
    remaining: int
    expires_on: date | None


@dataclass
class MemberExpiry:
    policy: str
    batches: list[BatchRow]
    expiring_30_days: int


def member_expiry(member) -> MemberExpiry:
    """A member's open batches, earliest first, with the day each expires, and what expires in the next 30 days."""
    policy = Policy.of()
    zone = store_timezone()
    batches = open_batches(member, limit=200)
    if policy.policy == rules.EXPIRY_INACTIVITY:
        last = PointsBatch.objects.filter(member=member).order_by("-earned_at").values_list("earned_at", flat=True)
        redeemed = (
            member.entries.filter(kind=EntryKind.REDEMPTION, status="active")
            .order_by("-created_at")
            .values_list("created_at", flat=True)
        )
        moments = [t for t in (last.first(), redeemed.first()) if t is not None]
        clock = max(moments).astimezone(zone).date() if moments else None
        rows = [BatchRow(b, left, policy.expires_on(clock)) for b, left in batches]
    else:
        rows = [BatchRow(b, left, policy.expires_on(b.earned_at.astimezone(zone).date())) for b, left in batches]
    horizon = store_today() + timedelta(days=30)
    soon = sum(r.remaining for r in rows if r.expires_on is not None and r.expires_on <= horizon)
    return MemberExpiry(policy=policy.describe(), batches=rows, expiring_30_days=soon)


def expiring_export_rows(days: int):
    """The members whose points expire within `days` days, for reminder emails: one CSV row each."""
    yield ["email", "first_name", "last_name", "points_expiring", "expiring_by", "available_points", "tier"]
    query = expiring_members_sql(days)
    if query is None:
        return
    sql, params = query
    by = (store_today() + timedelta(days=days)).isoformat()
    with connection.cursor() as cur:
        cur.execute(
            f"""SELECT m.email, m.first_name, m.last_name, d.points, m.available_points, t.name
                FROM ({sql}) d JOIN loyalty_member m ON m.id = d.member_id
                LEFT JOIN tiers_tier t ON t.id = m.tier_id ORDER BY m.id""",
            params,
        )
        while chunk := cur.fetchmany(2000):
            for email, first, last, points, available, tier in chunk:
                yield [email, first, last, int(points), by, int(available), tier or ""]
