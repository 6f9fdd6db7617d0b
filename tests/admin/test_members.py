"""The members list, a member's page, and the two member actions (Adjust points, Give reward)."""

import pytest
from django.contrib.auth.models import Permission

from loyalty.models import Coupon, EntryKind, LedgerEntry, Member, ProgramSettings
from tests.admin.conftest import MEMBERS_URL, confirm, first_post, member_with, messages_of, pending_entry
from tests.factories import MemberFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_members_list_finds_a_member_by_email_name_and_customer_id(agent_client):
    ada = MemberFactory(email="ada@shop.example", first_name="Ada", last_name="Lovelace", customer_id="C-77")
    MemberFactory(email="ben@shop.example", first_name="Ben", last_name="Baker")
    for term in ("ada@shop", "lovelace", "C-77"):
        page = agent_client.get(MEMBERS_URL, {"q": term})
        assert page.status_code == 200
        assert list(page.context["cl"].result_list) == [ada], term


def test_members_list_filters_by_tier_guest_and_pending(agent_client, tiers):
    gold = member_with(2500, email="gold@shop.example")
    guest = MemberFactory(email="guest@shop.example", signed_up_at=None)
    waiting = MemberFactory(email="waiting@shop.example")
    pending_entry(waiting)
    by_tier = agent_client.get(MEMBERS_URL, {"tier__id__exact": tiers[2].pk})
    assert list(by_tier.context["cl"].result_list) == [gold]
    guests = agent_client.get(MEMBERS_URL, {"account": "guest"})
    assert list(guests.context["cl"].result_list) == [guest]
    pending = agent_client.get(MEMBERS_URL, {"pending": "yes"})
    assert list(pending.context["cl"].result_list) == [waiting]
    assert b"waiting@shop.example" in pending.content


def test_adjust_points_shows_what_it_will_do_then_posts_once_per_member(agent_client):
    ann, bob = member_with(100, email="ann@shop.example"), member_with(0, email="bob@shop.example")
    page = first_post(agent_client, MEMBERS_URL, "adjust_points", [ann.pk, bob.pk])
    assert page.status_code == 200
    assert b"Adjust points: 2 members." in page.content
    assert b"ann@shop.example" in page.content and b'name="reason"' in page.content
    assert not LedgerEntry.objects.filter(reason="Goodwill").exists()  # nothing posted before confirming
    done = confirm(
        agent_client,
        MEMBERS_URL,
        "adjust_points",
        [ann.pk, bob.pk],
        page,
        points="250",
        reason="Goodwill",
        apply_type="relative",
    )
    assert "Adjusted 2 members: +250 each." in messages_of(done)
    ann.refresh_from_db(), bob.refresh_from_db()
    assert (ann.available_points, bob.available_points) == (350, 250)
    assert LedgerEntry.objects.filter(reason="Goodwill", kind=EntryKind.ADJUSTMENT).count() == 2


def test_adjust_points_double_submit_posts_nothing_twice(agent_client):
    ann = member_with(100)
    page = first_post(agent_client, MEMBERS_URL, "adjust_points", [ann.pk])
    fields = {"points": "50", "reason": "Late delivery", "apply_type": "relative"}
    confirm(agent_client, MEMBERS_URL, "adjust_points", [ann.pk], page, **fields)
    again = confirm(agent_client, MEMBERS_URL, "adjust_points", [ann.pk], page, **fields)
    assert "This form was already submitted; nothing was done a second time." in messages_of(again)
    ann.refresh_from_db()
    assert ann.available_points == 150
    assert LedgerEntry.objects.filter(reason="Late delivery").count() == 1


def test_adjust_points_resubmit_from_another_session_is_already_applied(client, support_agent):
    """Back-and-resubmit in a fresh session: the idempotency keys, not the session, stop the second post."""
    ann = member_with(100)
    client.force_login(support_agent)
    page = first_post(client, MEMBERS_URL, "adjust_points", [ann.pk])
    fields = {"points": "50", "reason": "Late delivery", "apply_type": "relative"}
    confirm(client, MEMBERS_URL, "adjust_points", [ann.pk], page, **fields)
    client.logout()
    client.force_login(support_agent)
    again = confirm(client, MEMBERS_URL, "adjust_points", [ann.pk], page, **fields)
    assert any("already had this adjustment" in m for m in messages_of(again))
    ann.refresh_from_db()
    assert ann.available_points == 150


def test_adjust_points_refusal_names_the_member_and_does_not_stop_the_others(agent_client):
    poor, rich = member_with(10, email="poor@shop.example"), member_with(900, email="rich@shop.example")
    page = first_post(agent_client, MEMBERS_URL, "adjust_points", [poor.pk, rich.pk])
    done = confirm(
        agent_client,
        MEMBERS_URL,
        "adjust_points",
        [poor.pk, rich.pk],
        page,
        points="-100",
        reason="Fix",
        apply_type="relative",
    )
    shown = messages_of(done)
    assert "Adjusted 1 member: -100." in shown
    assert (
        "Refused 1: poor@shop.example: Cannot take 100 points from poor@shop.example: only 10 are available." in shown
    )
    rich.refresh_from_db(), poor.refresh_from_db()
    assert (rich.available_points, poor.available_points) == (800, 10)


def test_adjust_points_set_to_brings_available_to_the_number(manager_client):
    ann, bob = member_with(700), member_with(200)
    page = first_post(manager_client, MEMBERS_URL, "adjust_points", [ann.pk, bob.pk])
    done = confirm(
        manager_client,
        MEMBERS_URL,
        "adjust_points",
        [ann.pk, bob.pk],
        page,
        points="500",
        reason="Reset",
        apply_type="set",
    )
    assert "Set 2 members to 500 points (change +100)." in messages_of(done)
    assert set(Member.objects.filter(pk__in=[ann.pk, bob.pk]).values_list("available_points", flat=True)) == {500}


def test_support_agent_is_refused_above_the_limit_with_the_limit_named(agent_client):
    ProgramSettings.objects.update_or_create(pk=1, defaults={"support_agent_limit": 1000})
    ann = member_with(0)
    page = first_post(agent_client, MEMBERS_URL, "adjust_points", [ann.pk])
    done = confirm(
        agent_client, MEMBERS_URL, "adjust_points", [ann.pk], page, points="5000", reason="Big", apply_type="relative"
    )
    assert any(
        "Changes of more than 1,000 points need a program manager: this one is 5,000 points." in m
        for m in messages_of(done)
    )
    ann.refresh_from_db()
    assert ann.available_points == 0


def test_program_manager_may_adjust_beyond_the_limit(manager_client):
    ann = member_with(0)
    page = first_post(manager_client, MEMBERS_URL, "adjust_points", [ann.pk])
    confirm(
        manager_client, MEMBERS_URL, "adjust_points", [ann.pk], page, points="5000", reason="VIP", apply_type="relative"
    )
    ann.refresh_from_db()
    assert ann.available_points == 5000


def test_bad_input_shows_field_errors_not_a_500(agent_client):
    ann = member_with(0)
    page = first_post(agent_client, MEMBERS_URL, "adjust_points", [ann.pk])
    again = agent_client.post(
        MEMBERS_URL,
        {
            "action": "adjust_points",
            "_selected_action": [ann.pk],
            "post": "yes",
            "action_token": page.context["form"]["action_token"].value(),
            "points": "lots",
            "reason": "",
            "apply_type": "relative",
        },
    )
    assert again.status_code == 200
    assert again.context["form"].errors.keys() == {"points", "reason"}
    assert not LedgerEntry.objects.filter(member=ann).exists()


def test_staff_without_the_permission_cannot_adjust_even_by_posting(client):
    viewer = UserFactory(username="viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_member"))
    client.force_login(viewer)
    ann = member_with(0)
    response = client.post(
        MEMBERS_URL,
        {
            "action": "adjust_points",
            "_selected_action": [ann.pk],
            "post": "yes",
            "action_token": "x",
            "points": "100",
            "reason": "sneaky",
            "apply_type": "relative",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert not LedgerEntry.objects.filter(member=ann).exists()
    assert client.get(f"{MEMBERS_URL}{ann.pk}/adjust-points/").status_code == 403
    assert client.post(f"{MEMBERS_URL}{ann.pk}/give-reward/", {"reward": "1"}).status_code == 403


def test_give_reward_deducts_the_cost_and_names_who_was_short(agent_client, reward):
    ann, bob = member_with(800, email="ann@shop.example"), member_with(100, email="bob@shop.example")
    page = first_post(agent_client, MEMBERS_URL, "give_reward", [ann.pk, bob.pk])
    assert b"Give reward: 2 members." in page.content
    done = confirm(
        agent_client,
        MEMBERS_URL,
        "give_reward",
        [ann.pk, bob.pk],
        page,
        reward=reward.pk,
        deduct_points="yes",
        reason="",
    )
    shown = messages_of(done)
    assert "Gave $5 off to 1 member (500 points deducted)." in shown
    assert any("bob@shop.example: Cannot give $5 off for 500 points" in m for m in shown)
    ann.refresh_from_db()
    assert ann.available_points == 300
    assert Coupon.objects.filter(member=ann, reward=reward).count() == 1
    assert not Coupon.objects.filter(member=bob).exists()


def test_give_reward_for_free_keeps_the_points_and_never_twice(agent_client, reward):
    ann = member_with(100)
    page = first_post(agent_client, MEMBERS_URL, "give_reward", [ann.pk])
    fields = {"reward": reward.pk, "deduct_points": "no", "reason": "Apology"}
    done = confirm(agent_client, MEMBERS_URL, "give_reward", [ann.pk], page, **fields)
    assert "Gave $5 off to 1 member, for free." in messages_of(done)
    confirm(agent_client, MEMBERS_URL, "give_reward", [ann.pk], page, **fields)
    ann.refresh_from_db()
    assert ann.available_points == 100
    assert Coupon.objects.filter(member=ann).count() == 1


def test_member_page_shows_figures_activity_coupons_and_tier_history(agent_client, tiers, reward):
    ann = member_with(2500, email="ann@shop.example")
    pending_entry(ann, 300)
    page = first_post(agent_client, MEMBERS_URL, "give_reward", [ann.pk])
    confirm(agent_client, MEMBERS_URL, "give_reward", [ann.pk], page, reward=reward.pk, deduct_points="yes", reason="")
    response = agent_client.get(f"{MEMBERS_URL}{ann.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Program activity" in html and "Opening balance" in html and "Order 1001" in html
    assert '<span class="figure-available">2000</span>' in html
    assert '<span class="figure-pending">300</span>' in html
    assert '<span class="figure-tier">Gold</span>' in html
    assert Coupon.objects.get(member=ann).code in html
    assert "&rarr; Gold" in html and "2500 lifetime points" in html
    assert "Adjust points" in html and "Give reward" in html
    rows = response.context["activity"]
    assert [r["entry"].kind for r in rows] == [EntryKind.REDEMPTION, EntryKind.EARN, EntryKind.ADJUSTMENT]


def test_member_page_activity_is_paginated_newest_first(agent_client, system):
    from loyalty.services import Posting, entries_post_bulk

    ann = MemberFactory()
    entries_post_bulk(postings=[Posting(ann.pk, 1, f"credit {i}") for i in range(60)], actor=system, source="system")
    first = agent_client.get(f"{MEMBERS_URL}{ann.pk}/change/")
    assert first.context["activity"][0]["entry"].reason == "credit 59"
    assert "Page 1 of 3" in first.content.decode()
    last = agent_client.get(f"{MEMBERS_URL}{ann.pk}/change/", {"activity_page": 3})
    assert [r["entry"].reason for r in last.context["activity"]][-1] == "credit 0"


def test_adjust_points_button_on_the_member_page(agent_client):
    ann = member_with(100)
    url = f"{MEMBERS_URL}{ann.pk}/adjust-points/"
    page = agent_client.get(url)
    assert page.status_code == 200 and b"Adjust the points of 1 member." in page.content
    token = page.context["form"]["action_token"].value()
    fields = {"action_token": token, "points": "-40", "reason": "Returned item", "apply_type": "relative"}
    done = agent_client.post(url, fields, follow=True)
    assert "Adjusted 1 member: -40." in messages_of(done)
    agent_client.post(url, fields, follow=True)
    ann.refresh_from_db()
    assert ann.available_points == 60
    assert done.redirect_chain[-1][0] == f"{MEMBERS_URL}{ann.pk}/change/"


def test_give_reward_button_on_the_member_page(agent_client, reward):
    ann = member_with(600)
    url = f"{MEMBERS_URL}{ann.pk}/give-reward/"
    page = agent_client.get(url)
    token = page.context["form"]["action_token"].value()
    done = agent_client.post(url, {"action_token": token, "reward": reward.pk, "deduct_points": "yes"}, follow=True)
    assert "Gave $5 off to 1 member (500 points deducted)." in messages_of(done)
    ann.refresh_from_db()
    assert ann.available_points == 100


def test_select_all_hands_the_filter_to_a_background_job(manager_client, tiers, django_capture_on_commit_callbacks):
    silver = [member_with(600) for _ in range(3)]
    bronze = member_with(10)
    page = first_post(
        manager_client,
        MEMBERS_URL + f"?tier__id__exact={tiers[1].pk}",
        "adjust_points",
        [silver[0].pk],
        select_across="1",
    )
    assert b"every member matching" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        done = confirm(
            manager_client,
            MEMBERS_URL + f"?tier__id__exact={tiers[1].pk}",
            "adjust_points",
            [silver[0].pk],
            page,
            points="100",
            reason="Silver bonus",
            apply_type="relative",
            select_across="1",
        )
    assert any("in the background" in m for m in messages_of(done))
    assert sorted(Member.objects.filter(pk__in=[m.pk for m in silver]).values_list("available_points", flat=True)) == [
        700,
        700,
        700,
    ]
    bronze.refresh_from_db()
    assert bronze.available_points == 10


def test_select_all_refuses_an_agent_above_the_limit(agent_client, tiers):
    ann = member_with(600)
    page = first_post(agent_client, MEMBERS_URL, "adjust_points", [ann.pk], select_across="1")
    done = confirm(
        agent_client,
        MEMBERS_URL,
        "adjust_points",
        [ann.pk],
        page,
        points="99999",
        reason="x",
        apply_type="relative",
        select_across="1",
    )
    assert any("Changes of more than 1,000 points need a program manager" in m for m in messages_of(done))
    ann.refresh_from_db()
    assert ann.available_points == 600


def test_members_list_filters_by_customer_group(agent_client):
    from loyalty.models import CustomerGroup, CustomerGroupMember

    ann, bob = MemberFactory(email="ann@shop.example"), MemberFactory(email="bob@shop.example")
    vips = CustomerGroup.objects.create(name="VIPs", is_static=True)
    CustomerGroupMember.objects.create(group=vips, member=ann)
    page = agent_client.get(MEMBERS_URL, {"group": vips.pk})
    assert list(page.context["cl"].result_list) == [ann]
    assert bob not in page.context["cl"].result_list
