"""The store's time zone decides the program's days: a shopper's 21:30 on 31 March in New York is 31 March.

Before, every day boundary followed TIME_ZONE (UTC here), so that order counted as April.
"""

import io
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from imports.services.kinds.base import moment
from loyalty.models import CustomerGroup, Order, ProgramSettings
from loyalty.selectors_groups import group_members
from loyalty.services.conversions import new_conversions
from loyalty.services.ledger import points_adjust
from loyalty.timezones import day_start, store_timezone, store_today
from tests.factories import EarnRuleFactory, MemberFactory, OrderFactory
from tests.imports.helpers import applied

pytestmark = pytest.mark.django_db
NEW_YORK = "America/New_York"
# 21:30 on 31 March 2026 in New York (daylight saving time, UTC-4) is 01:30 on 1 April in UTC.
EVENING_IN_NEW_YORK = datetime(2026, 4, 1, 1, 30, tzinfo=UTC)


@pytest.fixture
def new_york():
    program = ProgramSettings.load()
    program.store_time_zone = NEW_YORK
    program.save()
    return program


def test_the_default_store_time_zone_is_time_zone_from_the_environment(settings):
    settings.TIME_ZONE = "Europe/Paris"
    assert ProgramSettings.load().store_time_zone == "Europe/Paris"
    assert store_timezone().key == "Europe/Paris"


def test_an_evening_order_in_new_york_counts_in_its_own_day_for_customer_groups(new_york):
    member = MemberFactory()
    OrderFactory(member=member, placed_at=EVENING_IN_NEW_YORK)
    march = CustomerGroup.objects.create(
        name="March", last_order_from=date(2026, 3, 1), last_order_to=date(2026, 3, 31)
    )
    april = CustomerGroup.objects.create(name="April", last_order_from=date(2026, 4, 1))
    assert list(group_members(march)) == [member]
    assert list(group_members(april)) == []


def test_sign_up_dates_follow_the_store_days_too(new_york):
    member = MemberFactory(signed_up_at=EVENING_IN_NEW_YORK)
    group = CustomerGroup.objects.create(name="Joined in March", signed_up_to=date(2026, 3, 31))
    assert list(group_members(group)) == [member]


def test_a_csv_date_without_an_offset_is_the_store_time(new_york):
    value, problem = moment("2026-03-31 21:30")
    assert problem is None
    assert value == EVENING_IN_NEW_YORK
    value, _ = moment("2026-03-31T21:30:00+00:00")  # an offset written wins
    assert value == datetime(2026, 3, 31, 21, 30, tzinfo=UTC)


def test_an_orders_csv_records_its_evening_order_in_the_store_day(new_york, tiers):
    applied("order_id,email,total,placed_at\nNY-1,ny@shop.example,10.00,2026-03-31 21:30\n", kind="orders")
    assert Order.objects.get(store_order_id="NY-1").placed_at == EVENING_IN_NEW_YORK


def test_new_conversions_counts_the_last_30_store_days(new_york):
    # A program that started before the window, with a way to earn for orders (New conversions lists what earns).
    ProgramSettings.objects.filter(pk=1).update(program_started_at=timezone.now() - timedelta(days=90))
    EarnRuleFactory(name="Place an order", kind="order", points_per_currency_unit=1, hold_days=0)
    member = MemberFactory()
    zone = store_timezone()
    first_day = store_today() - timedelta(days=30)
    inside = OrderFactory(member=member, placed_at=day_start(first_day) + timedelta(minutes=1))
    outside = OrderFactory(member=member, placed_at=day_start(first_day) - timedelta(minutes=1))
    found = {order.pk for order in new_conversions().orders}
    assert inside.pk in found
    assert outside.pk not in found
    assert day_start(first_day).astimezone(zone).hour == 0


def test_nightly_jobs_run_at_the_store_hours(new_york):
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    nightly = PeriodicTask.objects.get(task="loyalty.reconcile_ledger_nightly")
    assert (nightly.crontab.hour, nightly.crontab.minute, str(nightly.crontab.timezone)) == ("3", "0", NEW_YORK)
    rfm = PeriodicTask.objects.get(task="loyalty.rfm_refresh")
    assert str(rfm.crontab.timezone) == NEW_YORK


def test_saving_a_new_store_time_zone_on_the_settings_page_moves_the_nightly_jobs(client, manager):
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    client.force_login(manager)
    url = reverse("admin:loyalty_programsettings_change", args=[ProgramSettings.load().pk])
    page = client.get(url).content.decode()
    assert "Store time zone" in page and "Store time now" in page
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {k: v for k, v in data.items() if v is not None and v is not False}
    started = ProgramSettings.load().program_started_at
    data.update(
        store_time_zone=NEW_YORK,
        program_started_at_0=started.astimezone(UTC).strftime("%Y-%m-%d"),
        program_started_at_1=started.astimezone(UTC).strftime("%H:%M:%S"),
    )
    data.pop("program_started_at", None)
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert ProgramSettings.load().store_time_zone == NEW_YORK
    nightly = PeriodicTask.objects.get(task="loyalty.reconcile_ledger_nightly")
    assert str(nightly.crontab.timezone) == NEW_YORK


def test_an_unknown_time_zone_is_refused_with_the_field_named(client, manager):
    from django.core.exceptions import ValidationError

    program = ProgramSettings.load()
    program.store_time_zone = "Mars/Olympus_Mons"
    with pytest.raises(ValidationError) as refused:
        program.full_clean()
    assert "store_time_zone" in refused.value.message_dict
    assert "is not a time zone name" in refused.value.message_dict["store_time_zone"][0]


def test_the_member_page_shows_its_dates_in_the_store_time_zone(new_york, client, manager, system):
    member = MemberFactory()
    points_adjust(member=member, points=5, reason="Welcome", actor=system)
    client.force_login(manager)
    page = client.get(reverse("admin:loyalty_member_change", args=[member.pk])).content.decode()
    assert "Dates and times are the store's (America/New_York)." in page
    local = timezone.localtime(member.entries.get().created_at, store_timezone())
    assert f"{local:%H:%M}" in page
