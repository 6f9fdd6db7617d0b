"""The pages read as a support team expects: one date format, amounts with units, the points once, the Tier column,
filter titles, order references, when pending points become available, coupons with their status, RFM freshness,
and no Save button on a record nothing can be saved on."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.timezone import localtime

from loyalty.actors import SystemActor
from loyalty.models import CustomerGroup, MemberRFM
from loyalty.services import reward_give
from loyalty.services.groups import group_action_create
from tests.admin.conftest import ENTRIES_URL, MEMBERS_URL, first_post, member_with, pending_entry
from tests.factories import EarnRuleFactory, ManagerFactory, OrderFactory, RewardFactory, TierFactory

pytestmark = pytest.mark.django_db
SYSTEM = SystemActor("tests")
SHORT_DATE = re.compile(r"\b\d{1,2}/\d{1,2}/\d{4}\b")  # "11/30/2026": the short format the pages used to mix in


def test_member_page_shows_the_points_once_first_and_dates_in_the_locales_one_format(agent_client):
    ann = member_with(400, email="ann@shop.example")
    html = agent_client.get(f"{MEMBERS_URL}{ann.pk}/change/").content.decode()
    assert html.count('class="figure-available"') == 1 and "field-available_points" not in html
    assert html.index('id="member-figures"') < html.index("field-email"), "the points come before the form"
    entry = ann.entries.get()
    assert date_format(localtime(entry.created_at), "DATETIME_FORMAT") in html  # "Nov. 30, 2026, 2:30 p.m."
    assert not SHORT_DATE.search(html)
    entries_list = agent_client.get(ENTRIES_URL).content.decode()
    assert date_format(localtime(entry.created_at), "DATETIME_FORMAT") in entries_list


def test_pending_points_say_when_they_become_available_on_the_member_page(agent_client):
    ann = member_with(0, email="ann@shop.example")
    waiting = pending_entry(ann, 120)
    html = agent_client.get(f"{MEMBERS_URL}{ann.pk}/change/").content.decode()
    expected = f"Pending: available on {date_format(localtime(waiting.hold_until), 'DATE_FORMAT')}"
    assert f'<td class="entry-status">{expected}</td>' in html


def test_member_page_lists_coupons_with_code_reward_and_status(agent_client, reward):
    ann = member_with(1000, email="ann@shop.example")
    coupon = reward_give(member=ann, reward=reward, deduct_points=True, actor=SYSTEM)
    html = agent_client.get(f"{MEMBERS_URL}{ann.pk}/change/").content.decode()
    assert (
        f'<td class="coupon-code">{coupon.code}</td><td class="coupon-reward">$5 off</td>\n'
        '      <td class="coupon-status">Active</td>'
    ) in html


def test_member_action_pages_keep_the_tier_and_add_available_after(agent_client):
    TierFactory(name="Bronze", threshold=0)
    ann = member_with(400, email="ann@shop.example")
    page = first_post(agent_client, MEMBERS_URL, "adjust_points", [ann.pk])
    assert [str(c) for c in page.context["columns"]][-2:] == ["Tier", "Available after"]
    assert page.context["rows"][0].cells[5:] == ["Bronze", ""]
    page = agent_client.get(f"{MEMBERS_URL}{ann.pk}/adjust-points/")
    assert page.context["rows"][0].cells[5] == "Bronze"


def test_ways_to_earn_and_reward_past_actions_give_amounts_with_units(client):
    client.force_login(ManagerFactory())
    EarnRuleFactory(name="Place an order", points_per_currency_unit="1.0000")
    EarnRuleFactory(name="Big spender", points_per_currency_unit="2.5000")
    EarnRuleFactory(name="Sign up", kind="signup", points=200, points_per_currency_unit=None)
    html = client.get("/admin/loyalty/earnrule/").content.decode()
    for text in ("1 point per $1", "2.5 points per $1", "200 points"):
        assert f'<td class="field-gives">{text}</td>' in html
    preview = client.get("/admin/imports/backfillrun/add/").content.decode()
    assert '<td class="gives">1 point per $1</td>' in preview and "per currency unit" not in preview


def test_order_reference_has_one_hash_and_amounts_their_currency(agent_client):
    ann = member_with(0, email="ann@shop.example")
    order = OrderFactory(member=ann, order_number="#1001", total="68.00", currency="USD")
    assert str(order) == "Shopify #1001"
    html = agent_client.get(f"{MEMBERS_URL}{ann.pk}/change/").content.decode()
    assert "Shopify #1001</a></td><td>$68.00</td>" in html and "##" not in html


def test_no_list_filter_title_reads_by_by(client):
    client.force_login(ManagerFactory(is_superuser=True))
    CustomerGroup.objects.create(name="Everyone")  # filters on related rows show once there are rows to pick
    TierFactory(name="Bronze", threshold=0)
    EarnRuleFactory()
    titles = []
    for model in admin.site._registry:
        html = client.get(f"/admin/{model._meta.app_label}/{model._meta.model_name}/", follow=True).content.decode()
        titles += [re.sub(r"\s+", " ", t).strip() for t in re.findall(r"<summary>(.*?)</summary>", html, re.S)]
    assert {"By staff member", "By date", "By new tier", "By way to earn", "By customer group"} <= set(titles)
    assert not [t for t in titles if t.lower() in ("by by", "by when", "by to tier", "by earn rule")]


def test_a_record_with_nothing_to_save_has_no_save_buttons(client, tiers):
    manager = ManagerFactory()
    client.force_login(manager)
    group = CustomerGroup.objects.create(name="Everyone")
    action = group_action_create(group=group, apply_type="relative", points=5, comment="Thanks", actor=manager)
    page = client.get(f"/admin/loyalty/groupaction/{action.pk}/change/")
    assert page.context["title"] == "View group action"
    assert 'name="_save"' not in page.content.decode()
    ann = member_with(1000, email="ann@shop.example")
    coupon = reward_give(member=ann, reward=RewardFactory(), deduct_points=True, actor=SYSTEM)
    assert 'name="_save"' not in client.get(f"/admin/loyalty/coupon/{coupon.pk}/change/").content.decode()
    order = OrderFactory(member=ann)
    assert 'name="_save"' not in client.get(f"/admin/loyalty/order/{order.pk}/change/").content.decode()
    assert 'name="_save"' in client.get(f"{MEMBERS_URL}{ann.pk}/change/").content.decode(), "a member is editable"


def test_seed_demo_leaves_rfm_scores_and_the_group_pages_say_when_they_were_updated(client):
    call_command("seed_demo", members=30, entries_per_member=3, quiet=True, stdout=StringIO())
    assert MemberRFM.objects.count() > 0
    assert MemberRFM.objects.count() == MemberRFM.objects.values("member").distinct().count()
    client.force_login(ManagerFactory())
    last = max(MemberRFM.objects.values_list("computed_at", flat=True))
    html = client.get("/admin/loyalty/customergroup/").content.decode()
    assert f"RFM scores last updated {date_format(localtime(last), 'DATETIME_FORMAT')}" in html
    group = CustomerGroup.objects.create(name="Champions", segment="champions")
    assert "RFM scores last updated" in client.get(f"/admin/loyalty/customergroup/{group.pk}/change/").content.decode()


def test_group_pages_say_when_rfm_scores_were_never_refreshed(client):
    client.force_login(ManagerFactory())
    OrderFactory(placed_at=timezone.now() - timedelta(days=3))
    html = client.get("/admin/loyalty/customergroup/").content.decode()
    assert "RFM scores were never refreshed" in html
