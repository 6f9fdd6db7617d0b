"""The liability report and the dashboard (issue 15): program managers read them; support agents keep the plain
home page; a past date is exact; the CSV holds the same figures."""

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from loyalty.actors import SystemActor
from loyalty.models import LedgerDay, PointsBatch, ProgramSettings
from loyalty.selectors_liability import dashboard_figures, liability_on
from loyalty.services import points_adjust, points_earn, reward_give
from loyalty.services.expiry import points_expire
from loyalty.services.members import member_create
from loyalty.services.totals import ledger_days_refresh
from loyalty.timezones import store_today
from tests.factories import RewardFactory

pytestmark = pytest.mark.django_db
SYSTEM = SystemActor("report test")
URL = "/admin/loyalty/liabilityreport/"


@pytest.fixture
def ledger(tiers):
    ProgramSettings.load()
    ProgramSettings.objects.filter(pk=1).update(point_value="0.0100")
    ann, bob = member_create(email="ann@example.com"), member_create(email="bob@example.com")
    points_earn(member=ann, points=700, reason="order", actor=SYSTEM, source="order")
    points_earn(member=bob, points=300, reason="order", actor=SYSTEM, source="order")
    points_earn(
        member=bob, points=50, reason="order", actor=SYSTEM, source="order", hold_until=timezone.now() + timedelta(1)
    )
    points_adjust(member=ann, points=-100, reason="fix", actor=SYSTEM)
    reward_give(member=bob, reward=RewardFactory(points_cost=200), deduct_points=True, actor=SYSTEM)
    return ann, bob


def test_liability_today_adds_up_by_tier_and_by_source(ledger):
    report = liability_on()
    assert (report.available, report.pending) == (700, 50)
    assert report.value(report.total) == pytest.approx(7.50)
    assert sum(line.available for line in report.by_tier) == 700
    assert sum(line.pending for line in report.by_tier) == 50
    assert {line.label: line.available for line in report.by_tier} == {"Bronze": 100, "Silver": 600}
    assert sum(line.total for line in report.by_source) == 750
    assert {line.label: line.available for line in report.by_source}["Redemptions"] == -200


@pytest.fixture
def mark_now(monkeypatch):
    """Refreshes store everything up to their own moment (no margin for clocks, no lag on SQLite)."""
    from loyalty.services import totals

    monkeypatch.setattr(totals, "CLOCK_MARGIN_S", 0)
    monkeypatch.setattr(totals, "SQLITE_MARK_LAG_S", 0)


def test_a_past_date_is_exact_whether_or_not_the_days_are_stored(ledger, mark_now):
    yesterday = store_today() - timedelta(days=1)
    assert liability_on(yesterday).total == 0
    ledger_days_refresh()
    assert LedgerDay.objects.exists()
    assert (liability_on().available, liability_on().pending) == (700, 50)
    assert liability_on(yesterday).total == 0


def test_the_expiry_schedule_and_what_is_due(ledger):
    ProgramSettings.objects.filter(pk=1).update(expiry_policy="after_earning", expiry_period=2, expiry_unit="months")
    ann, _bob = ledger
    PointsBatch.objects.filter(member=ann).update(earned_at=timezone.now() - timedelta(days=70))
    report = liability_on()
    assert report.due == 600  # ann's open points, two months old
    assert sum(points for _month, points in report.expiring) == 100  # bob's, in two months
    points_expire()
    assert liability_on().due == 0


def test_manager_reads_the_report_and_downloads_it(manager_client, ledger):
    page = manager_client.get(URL)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Outstanding points at the end of" in text and "Silver" in text
    download = manager_client.get(URL, {"format": "csv", "on": store_today().isoformat()})
    assert download["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.content.decode())))
    assert rows[1][:5] == ["total", f"on {store_today().isoformat()}", "700", "50", "750"]
    bad = manager_client.get(URL, {"on": "yesterday"})
    assert bad.status_code == 200 and "is not a date" in bad.content.decode()


def test_agents_keep_the_plain_home_page(support_agent, manager_client, ledger):
    agent_client = Client()
    agent_client.force_login(support_agent)
    assert agent_client.get(URL).status_code == 403
    assert 'id="program-dashboard"' not in agent_client.get("/admin/").content.decode()
    home = manager_client.get("/admin/").content.decode()
    assert 'id="program-dashboard"' in home and "<svg" in home and "Points per week" in home


def test_dashboard_figures_count_the_weeks(ledger):
    board = dashboard_figures()
    assert board.issued[-1] == 1000 and board.redeemed[-1] == 200  # the pending 50 is not issued yet
    assert board.outstanding[-1] == 750
    assert dict(board.tiers) == {"Bronze": 1, "Silver": 1}


def test_the_stored_expiry_schedule_equals_the_live_one(ledger):
    from loyalty.models import ExpiryClockDay

    ProgramSettings.objects.filter(pk=1).update(expiry_policy="after_earning", expiry_period=30, expiry_unit="days")
    ann, _bob = ledger
    PointsBatch.objects.filter(member=ann).update(earned_at=timezone.now() - timedelta(days=20))
    live = liability_on()
    ledger_days_refresh()
    assert ExpiryClockDay.objects.exists()
    stored = liability_on()
    assert stored.expiring == live.expiring and stored.due == live.due
    assert sum(points for _month, points in stored.expiring) == 700


@pytest.mark.parametrize("on", ["9999-12-31", "0001-01-01"])
def test_a_date_beyond_the_years_the_program_holds_is_refused_not_a_500(manager_client, on):
    page = manager_client.get(URL, {"on": on})
    assert page.status_code == 200 and "is outside the years 1900 to 2100" in page.content.decode()
    download = manager_client.get(URL, {"on": on, "format": "csv"})
    assert download.status_code == 200 and "outside the years" in download.content.decode()


def test_entries_after_the_stored_mark_count_once(ledger, mark_now):
    """The stored totals reach a mark; what came after it is summed from the ledger, once, until the next refresh."""
    ann, bob = ledger
    ledger_days_refresh()
    assert LedgerDay.objects.filter(day=store_today()).exists()
    before = (liability_on().available, liability_on().pending, dashboard_figures().outstanding[-1])
    assert before == (700, 50, 750)
    points_earn(member=ann, points=40, reason="order", actor=SYSTEM, source="order")
    points_adjust(member=bob, points=-30, reason="fix", actor=SYSTEM)
    for _refresh in range(2):
        report, board = liability_on(), dashboard_figures()
        assert (report.available, report.pending) == (710, 50)
        assert board.outstanding[-1] == 760 and board.issued[-1] == 1040
        assert sum(line.available for line in report.by_source) == 710
        ledger_days_refresh()
    assert liability_on(store_today() - timedelta(days=1)).total == 0


@pytest.mark.postgres  # PostgreSQL lists the open transactions
@pytest.mark.django_db(transaction=True)
def test_a_transaction_still_open_holds_the_mark_back(tiers, mark_now):
    """An entry stamped inside a transaction that commits after the refresh must land after the mark, not before."""
    from django.db import connection

    from loyalty.services.totals import stored_mark

    other = connection.get_new_connection(connection.get_connection_params())
    try:
        with other.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT now()")
            started = cur.fetchone()[0]
        ledger_days_refresh()
        assert stored_mark() <= started
    finally:
        other.rollback()
        other.close()
    ledger_days_refresh()
    assert stored_mark() > started


def test_a_refresh_that_commits_while_the_report_reads_counts_nothing_twice(ledger, mark_now, monkeypatch):
    """The report reads the mark, then the stored rows: a refresh committing between the two moves both. Rows of the
    new mark summed with the ledger from the old one would count the entries between the two marks twice."""
    from loyalty.services import totals

    ann, _bob = ledger
    ledger_days_refresh()
    points_earn(member=ann, points=40, reason="order", actor=SYSTEM, source="order")
    real, refreshed = totals.stored_mark, []

    def the_mark_then_a_refresh():
        mark = real()
        if not refreshed:
            refreshed.append(mark)
            ledger_days_refresh()  # another process's refresh, committed right after the report read the mark
        return mark

    monkeypatch.setattr(totals, "stored_mark", the_mark_then_a_refresh)
    report = liability_on()
    assert refreshed, "the refresh ran between the mark and the rows"
    assert sum(line.available for line in report.by_source) == 740
    assert sum(line.pending for line in report.by_source) == 50


def test_a_new_store_time_zone_sums_every_day_again_in_it(ledger, mark_now):
    """Stored days are days of the zone they were summed in. Twelve hours behind UTC, then fourteen ahead: every
    moment of the ledger falls on a later day in the new zone, so a refresh that kept the old zone's days before the
    mark's would count the day's entries on both days."""
    from loyalty.timezones import forget_store_timezone

    def store_zone(name):
        ProgramSettings.objects.filter(pk=1).update(store_time_zone=name)
        forget_store_timezone()

    store_zone("Etc/GMT+12")
    ledger_days_refresh()
    report = liability_on()
    assert (sum(line.available for line in report.by_source), sum(line.pending for line in report.by_source)) == (
        700,
        50,
    )
    store_zone("Pacific/Kiritimati")
    for _refresh in range(2):  # before the next refresh (the stored days do not hold), and after it
        report = liability_on()
        assert sum(line.available for line in report.by_source) == 700
        assert sum(line.pending for line in report.by_source) == 50
        assert dashboard_figures().outstanding[-1] == 750
        ledger_days_refresh()
    assert not LedgerDay.objects.filter(day__lt=store_today()).exists(), "no day of the old zone is kept"


@pytest.mark.postgres  # SQLite lets one writer at a time
@pytest.mark.django_db(transaction=True)
def test_two_first_refreshes_at_once_store_each_day_once(tiers, mark_now):
    """Before the first refresh there is no mark to lock (after the migration that made it, say): two refreshes
    at once must still take turns, not both store every day."""

    ann = member_create(email="ann@example.com")
    points_earn(member=ann, points=700, reason="order", actor=SYSTEM, source="order")
    assert _two_at_once(LedgerDay.objects, ledger_days_refresh) == []
    days = list(LedgerDay.objects.values_list("day", "kind", "earn_rule_id"))
    assert len(days) == len(set(days)), "each day's totals stored once"
    assert sum(line.available for line in liability_on().by_source) == 700


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_expiry_schedule_refreshes_at_once_store_each_day_once(tiers):
    """The nightly run's refresh and beat's hourly one may meet: the schedule must not count a day twice."""

    from loyalty.models import ExpiryClockDay
    from loyalty.services.totals import expiry_clock_days_refresh

    ProgramSettings.load()
    ProgramSettings.objects.filter(pk=1).update(expiry_policy="after_earning", expiry_period=2, expiry_unit="months")
    ann = member_create(email="ann@example.com")
    points_earn(member=ann, points=700, reason="order", actor=SYSTEM, source="order")
    assert _two_at_once(ExpiryClockDay.objects, expiry_clock_days_refresh) == []
    assert sum(ExpiryClockDay.objects.values_list("points", flat=True)) == 700
    assert sum(points for _month, points in liability_on().expiring) == 700


def _two_at_once(manager, refresh) -> list:
    """Run `refresh` in two threads that meet at its bulk_create into `manager` (each past its delete), unless one
    waits for the other's lock; returns the errors they raised."""
    import threading

    from django.db import connection

    from tests.side_by_side import SideBySide

    real, together, errors = manager.bulk_create, SideBySide(), []

    def storing_side_by_side(*args, **kwargs):
        together.meet()
        return real(*args, **kwargs)

    def one():
        try:
            refresh()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    manager.bulk_create = storing_side_by_side
    try:
        threads = [threading.Thread(target=one) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        del manager.bulk_create  # the manager's own method again
    return errors
