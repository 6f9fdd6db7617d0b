"""Ledger entry actions (reverse, approve, reject), the entries list, the catalog, settings, conversions, roles."""

import re

import pytest
from django.contrib.auth.models import Group

from loyalty.models import Coupon, EntryKind, EntryStatus, LedgerEntry, ProgramSettings, RewardToken, TokenStatus
from loyalty.services import reward_give
from tests.admin.conftest import ENTRIES_URL, confirm, first_post, member_with, messages_of, pending_entry
from tests.factories import EarnRuleFactory, MemberFactory, OrderFactory

pytestmark = pytest.mark.django_db


def credited_entry(member):
    return LedgerEntry.objects.filter(member=member, kind=EntryKind.ADJUSTMENT).latest("id")


def test_reverse_conversion_posts_a_linked_reversal(agent_client):
    ann = member_with(400, email="ann@shop.example")
    entry = credited_entry(ann)
    page = first_post(agent_client, ENTRIES_URL, "reverse_conversion", [entry.pk])
    assert b"Reverse conversion: 1 entry." in page.content and b"ann@shop.example" in page.content
    assert page.context["rows"][0].cells[6:8] == ["400", "0"]  # available before, and after the reversal
    done = confirm(agent_client, ENTRIES_URL, "reverse_conversion", [entry.pk], page, reason="Fraudulent lead")
    assert "Reversed 1 entry (-400 points)." in messages_of(done)
    ann.refresh_from_db()
    assert ann.available_points == 0
    assert LedgerEntry.objects.get(reverses=entry).points == -400


def test_reverse_is_refused_with_the_numbers_when_points_were_spent(agent_client, reward):
    ann = member_with(600, email="ann@shop.example")
    entry = credited_entry(ann)
    reward_give(member=ann, reward=reward, deduct_points=True, actor=ann_actor())
    page = first_post(agent_client, ENTRIES_URL, "reverse_conversion", [entry.pk])
    done = confirm(agent_client, ENTRIES_URL, "reverse_conversion", [entry.pk], page, reason="Fraud")
    shown = messages_of(done)
    assert not any(m.startswith("Reversed") for m in shown)
    assert any("Cannot reverse: 600 points were credited but only 100 are available." in m for m in shown)
    assert not LedgerEntry.objects.filter(reverses=entry).exists()


def ann_actor():
    from loyalty.actors import SystemActor

    return SystemActor("tests")


def test_reverse_twice_is_refused_and_the_form_twice_does_nothing(agent_client):
    ann = member_with(400)
    entry = credited_entry(ann)
    page = first_post(agent_client, ENTRIES_URL, "reverse_conversion", [entry.pk])
    confirm(agent_client, ENTRIES_URL, "reverse_conversion", [entry.pk], page, reason="Fraud")
    again = confirm(agent_client, ENTRIES_URL, "reverse_conversion", [entry.pk], page, reason="Fraud")
    assert "This form was already submitted; nothing was done a second time." in messages_of(again)
    page2 = first_post(agent_client, ENTRIES_URL, "reverse_conversion", [entry.pk])
    third = confirm(agent_client, ENTRIES_URL, "reverse_conversion", [entry.pk], page2, reason="Fraud")
    assert any("was already reversed by entry" in m for m in messages_of(third))
    assert LedgerEntry.objects.filter(reverses=entry).count() == 1


def test_approve_pending_makes_points_available(manager_client):
    ann = MemberFactory()
    entry = pending_entry(ann, 300)
    page = first_post(manager_client, ENTRIES_URL, "approve_pending", [entry.pk])
    done = confirm(manager_client, ENTRIES_URL, "approve_pending", [entry.pk], page, reason="")
    assert "Approved 1 pending entry: 300 points now available." in messages_of(done)
    ann.refresh_from_db()
    assert (ann.available_points, ann.pending_points) == (300, 0)


def test_reject_pending_needs_a_reason_and_names_entries_no_longer_pending(agent_client):
    ann = MemberFactory()
    waiting, done_already = pending_entry(ann, 300), credited_entry(member_with(50))
    page = first_post(agent_client, ENTRIES_URL, "reject_pending", [waiting.pk, done_already.pk])
    missing = agent_client.post(
        ENTRIES_URL,
        {
            "action": "reject_pending",
            "_selected_action": [waiting.pk, done_already.pk],
            "post": "yes",
            "action_token": page.context["form"]["action_token"].value(),
            "reason": "",
        },
    )
    assert missing.status_code == 200 and "reason" in missing.context["form"].errors
    done = confirm(agent_client, ENTRIES_URL, "reject_pending", [waiting.pk, done_already.pk], page, reason="Returned")
    shown = messages_of(done)
    assert "Rejected 1 pending entry (300 points)." in shown
    assert any(f"#{done_already.pk}" in m and "not pending" in m for m in shown)
    ann.refresh_from_db()
    assert ann.pending_points == 0
    waiting.refresh_from_db()
    assert waiting.status == EntryStatus.REJECTED


def test_entries_list_filters_by_kind_status_source_and_actor(agent_client, support_agent):
    ann = member_with(100)
    pending_entry(ann)
    page = agent_client.get(ENTRIES_URL, {"status__exact": "pending"})
    assert [e.status for e in page.context["cl"].result_list] == ["pending"]
    page = agent_client.get(ENTRIES_URL, {"kind__exact": "adjustment", "source__exact": "admin", "by": "system"})
    assert [e.reason for e in page.context["cl"].result_list] == ["Opening balance"]
    page = agent_client.get(ENTRIES_URL, {"by": str(support_agent.pk)})
    assert list(page.context["cl"].result_list) == []
    assert agent_client.get(ENTRIES_URL, {"created_at__gte": "2000-01-01 00:00:00+00:00"}).status_code == 200


def test_agent_sees_settings_but_cannot_change_them(agent_client):
    settings = ProgramSettings.load()
    url = f"/admin/loyalty/programsettings/{settings.pk}/change/"
    assert agent_client.get("/admin/loyalty/programsettings/").url == url
    page = agent_client.get(url)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    refused = agent_client.post(url, {"program_name": "Hacked", "support_agent_limit": "999999"})
    assert refused.status_code == 403
    settings.refresh_from_db()
    assert settings.support_agent_limit == 1000


def test_manager_changes_the_settings_single_row(manager_client):
    settings = ProgramSettings.load()
    url = f"/admin/loyalty/programsettings/{settings.pk}/change/"
    form = manager_client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, bool)}
    data.update(
        program_name="Stars",
        support_agent_limit="2500",
        program_started_at_0="2026-01-01",
        program_started_at_1="00:00:00",
        revert_enabled="on",
    )
    response = manager_client.post(url, data, follow=True)
    assert response.status_code == 200
    settings.refresh_from_db()
    assert (settings.program_name, settings.support_agent_limit) == ("Stars", 2500)
    assert manager_client.get("/admin/loyalty/programsettings/add/").status_code == 403


def test_disable_coupon_action(manager_client, reward):
    ann = member_with(600)
    coupon = reward_give(member=ann, reward=reward, deduct_points=False, actor=ann_actor())
    done = manager_client.post(
        "/admin/loyalty/coupon/",
        {"action": "disable_coupons", "_selected_action": [coupon.pk], "index": "0"},
        follow=True,
    )
    assert "Disabled 1 coupon." in messages_of(done)
    coupon.refresh_from_db()
    assert coupon.disabled


def test_catalog_pages_open_for_the_manager(manager_client):
    for url in (
        "/admin/loyalty/reward/",
        "/admin/loyalty/coupon/",
        "/admin/tiers/tier/",
        "/admin/loyalty/earnrule/",
        "/admin/loyalty/ledgerentry/",
        "/admin/tiers/tierchange/",
        "/admin/loyalty/reward/add/",
    ):
        assert manager_client.get(url).status_code == 200, url


def test_roles_are_made_by_the_migration_with_their_permissions():
    agent, manager = Group.objects.get(name="Support agent"), Group.objects.get(name="Program manager")
    agent_perms = set(agent.permissions.values_list("codename", flat=True))
    assert {"view_member", "adjust_points", "give_reward", "reverse_entry", "approve_pending"} <= agent_perms
    assert "adjust_points_unlimited" not in agent_perms and "change_programsettings" not in agent_perms
    manager_perms = set(manager.permissions.values_list("codename", flat=True))
    assert {"adjust_points_unlimited", "change_programsettings", "add_reward", "change_tier"} <= manager_perms


def test_add_conversion_by_token_credits_once(agent_client):
    EarnRuleFactory(name="Closed referral", kind="conversion", points=300, points_per_currency_unit=None, hold_days=0)
    ann = MemberFactory(email="ann@shop.example")
    RewardToken.objects.create(token="REF-123", member=ann)
    url = "/admin/loyalty/member/add-conversion/"
    page = agent_client.get(url)
    token = page.context["form"]["action_token"].value()
    done = agent_client.post(url, {"action_token": token, "token": "REF-123", "reason": "Lead closed"}, follow=True)
    assert "Credited 300 points to ann@shop.example (Active)." in messages_of(done)
    second = agent_client.get(url).context["form"]["action_token"].value()
    again = agent_client.post(url, {"action_token": second, "token": "REF-123", "reason": "Again"}, follow=True)
    assert "This conversion was already credited to ann@shop.example; nothing was credited again." in messages_of(again)
    ann.refresh_from_db()
    assert ann.available_points == 300
    assert RewardToken.objects.get(token="REF-123").status == TokenStatus.CLOSED


def test_add_conversion_by_email_and_bad_input(agent_client):
    ann = MemberFactory(email="ann@shop.example")
    assert ann.available_points == 0
    url = "/admin/loyalty/member/add-conversion/"
    token = agent_client.get(url).context["form"]["action_token"].value()
    bad = agent_client.post(url, {"action_token": token, "email": "nobody@shop.example", "reason": "x", "points": "5"})
    assert bad.status_code == 200 and "No member has the email nobody@shop.example." in str(bad.context["form"].errors)
    neither = agent_client.post(url, {"action_token": token, "reason": "x"})
    assert "Give a reward token or a member&#x27;s email." in neither.content.decode()
    done = agent_client.post(
        url, {"action_token": token, "email": "ANN@shop.example", "points": "120", "reason": "Phone sale"}, follow=True
    )
    assert "Credited 120 points to ann@shop.example (Active)." in messages_of(done)


def test_new_conversions_lists_unrewarded_orders_and_rewards_them(agent_client):
    EarnRuleFactory(name="Place an order", kind="order", points_per_currency_unit=2, hold_days=0)
    ProgramSettings.load()  # the program started before the order (older orders are Reward past actions' work)
    order = OrderFactory(total=40, earnable_amount=40)
    url = "/admin/loyalty/member/new-conversions/"
    page = agent_client.get(url)
    lines = page.context["lines"]["order"]
    assert page.status_code == 200 and [(line.obj, line.points) for line in lines] == [(order, 80)]
    boxes = re.findall(r'<input type="checkbox" name="order"[^>]*>', page.content.decode())
    assert len(boxes) == 1 and "checked" not in boxes[0], "nothing is ticked by default"
    preview = agent_client.post(url, {"order": [order.pk]})
    assert preview.status_code == 200, "the first POST shows the effect, it credits nothing"
    section = preview.context["sections"][0]
    assert (section.totals["points_in"], section.totals["members"]) == (80, 1)
    order.member.refresh_from_db()
    assert order.member.available_points == 0
    confirm = dict(preview.context["hidden"])
    confirm["post"] = "yes"
    done = agent_client.post(url, confirm, follow=True)
    assert "Rewarded 1 conversion: 80 points." in messages_of(done)
    order.member.refresh_from_db()
    assert order.member.available_points == 80
    twice = agent_client.post(url, confirm, follow=True)
    assert any("already submitted" in m for m in messages_of(twice)), "the one-time token runs it once"
    again = agent_client.post(url, {"order": [order.pk], "post": "yes", "action_token": "another"}, follow=True)
    assert any("not a new conversion" in m for m in messages_of(again))
    assert order.member.entries.count() == 1
    assert order not in [line.obj for line in agent_client.get(url).context["lines"]["order"]]
    assert Coupon.objects.count() == 0
