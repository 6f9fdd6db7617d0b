"""Customer groups: saved filters and static lists, their live member counts, and the members-list filter."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.sites import site
from django.test import RequestFactory
from django.utils import timezone

from loyalty.admin.members import CustomerGroupFilter
from loyalty.errors import LoyaltyError
from loyalty.models import AccountFilter, CustomerGroup, Member
from loyalty.selectors_groups import group_member_count, group_members
from loyalty.services import points_adjust
from loyalty.services.groups import group_static_members_add
from tests.factories import MemberFactory, OrderFactory

pytestmark = pytest.mark.django_db


def emails(queryset):
    return sorted(queryset.values_list("email", flat=True))


@pytest.fixture
def shoppers(tiers, manager):
    """ann: Silver, 3 orders ($300) last 10 days ago; bob: guest, 1 order ($50) 200 days ago; cy: no orders."""
    now = timezone.now()
    ann = MemberFactory(email="ann@x.example", signed_up_at=now - timedelta(days=400))
    bob = MemberFactory(email="bob@x.example", signed_up_at=None)
    cy = MemberFactory(email="cy@x.example", signed_up_at=now - timedelta(days=5))
    points_adjust(member=ann, points=600, reason="Welcome", actor=manager)
    for days in (100, 50, 10):
        OrderFactory(member=ann, total=100, placed_at=now - timedelta(days=days))
    OrderFactory(member=bob, total=50, placed_at=now - timedelta(days=200))
    OrderFactory(member=bob, total=999, placed_at=now - timedelta(days=1), cancelled=True)  # never counts
    return ann, bob, cy


def test_filter_by_tier(shoppers, tiers):
    group = CustomerGroup.objects.create(name="Silver", tier=tiers[1])
    assert emails(group_members(group)) == ["ann@x.example"]


def test_filter_accounts_and_guests(shoppers):
    accounts = CustomerGroup.objects.create(name="Accounts", account=AccountFilter.ACCOUNT)
    guests = CustomerGroup.objects.create(name="Guests", account=AccountFilter.GUEST)
    assert emails(group_members(accounts)) == ["ann@x.example", "cy@x.example"]
    assert emails(group_members(guests)) == ["bob@x.example"]


def test_filter_sign_up_dates_are_inclusive(shoppers):
    today = timezone.localdate()
    group = CustomerGroup.objects.create(name="New", signed_up_from=today - timedelta(days=30), signed_up_to=today)
    assert emails(group_members(group)) == ["cy@x.example"]


def test_filter_number_of_orders_ignores_cancelled_orders(shoppers):
    two_plus = CustomerGroup.objects.create(name="Repeat", orders_min=2)
    one = CustomerGroup.objects.create(name="One order", orders_min=1, orders_max=1)
    assert emails(group_members(two_plus)) == ["ann@x.example"]
    assert emails(group_members(one)) == ["bob@x.example"]


def test_at_most_orders_includes_members_without_orders(shoppers):
    group = CustomerGroup.objects.create(name="Few orders", orders_max=1)
    assert emails(group_members(group)) == ["bob@x.example", "cy@x.example"]


def test_filter_total_spent(shoppers):
    group = CustomerGroup.objects.create(name="Big spenders", spent_min=Decimal("200"))
    assert emails(group_members(group)) == ["ann@x.example"]


def test_filter_last_order_date(shoppers):
    """Everyone who has not ordered for six months."""
    group = CustomerGroup.objects.create(name="Lapsed", last_order_to=timezone.localdate() - timedelta(days=180))
    assert emails(group_members(group)) == ["bob@x.example"]


def test_filters_combine(shoppers):
    group = CustomerGroup.objects.create(name="Accounts with orders", account=AccountFilter.ACCOUNT, orders_min=1)
    assert group_member_count(group) == 1


def test_live_count_follows_new_members(shoppers):
    group = CustomerGroup.objects.create(name="Everyone")
    assert group_member_count(group) == 3
    MemberFactory()
    assert group_member_count(group) == 4


def test_static_list_from_uploaded_emails(shoppers):
    group = CustomerGroup.objects.create(name="VIP list", is_static=True)
    result = group_static_members_add(group=group, text="email\nANN@x.example\nnobody@x.example; bob@x.example\n")
    assert (result.added, result.already_in, result.unknown) == (2, 0, ["nobody@x.example"])
    assert emails(group_members(group)) == ["ann@x.example", "bob@x.example"]

    again = group_static_members_add(group=group, text="bob@x.example, cy@x.example")
    assert (again.added, again.already_in) == (1, 1)
    assert group_member_count(group) == 3


def test_static_list_refuses_an_upload_without_emails(shoppers):
    group = CustomerGroup.objects.create(name="VIP list", is_static=True)
    with pytest.raises(LoyaltyError, match="No email addresses"):
        group_static_members_add(group=group, text="name,points\nann,5")
    assert group_member_count(group) == 0


def test_saved_filter_refuses_uploaded_emails(shoppers):
    group = CustomerGroup.objects.create(name="Everyone")
    with pytest.raises(LoyaltyError, match="saved filter"):
        group_static_members_add(group=group, text="ann@x.example")


def test_members_list_filter_by_group(shoppers, manager):
    group = CustomerGroup.objects.create(name="Guests", account=AccountFilter.GUEST)
    request = RequestFactory().get("/admin/loyalty/member/", {"group": str(group.pk)})
    request.user = manager
    model_admin = site._registry[Member]
    assert CustomerGroupFilter in model_admin.list_filter
    chosen = CustomerGroupFilter(request, {"group": [str(group.pk)]}, Member, model_admin)
    assert (str(group.pk), "Guests") in chosen.lookups(request, model_admin)
    assert emails(chosen.queryset(request, Member.objects.all())) == ["bob@x.example"]
    unknown = CustomerGroupFilter(request, {"group": ["999999"]}, Member, model_admin)
    assert unknown.queryset(request, Member.objects.all()).count() == 0


def test_group_admin_shows_live_member_count(shoppers, client, manager):
    group = CustomerGroup.objects.create(name="Everyone")
    client.force_login(manager)
    page = client.get(f"/admin/loyalty/customergroup/{group.pk}/change/")
    assert page.status_code == 200
    assert "3 members now" in page.content.decode()
    listing = client.get("/admin/loyalty/customergroup/").content.decode()
    count_url = f"/admin/loyalty/customergroup/{group.pk}/member-count/"
    assert f'data-member-count-url="{count_url}"' in listing  # the page fills the count in
    assert client.get(count_url).json() == {"group": group.pk, "members": 3, "label": "3"}
    # The count links to the members list filtered to the group.
    members = client.get(f"/admin/loyalty/member/?group={group.pk}")
    assert f'href="/admin/loyalty/member/?group={group.pk}"' in listing
    assert members.status_code == 200 and len(members.context["cl"].result_list) == 3
    assert client.get("/admin/loyalty/customergroup/999999/member-count/").status_code == 404


def test_group_admin_upload_emails_page(shoppers, client, manager):
    group = CustomerGroup.objects.create(name="VIP list", is_static=True)
    client.force_login(manager)
    url = f"/admin/loyalty/customergroup/{group.pk}/upload-emails/"
    assert client.get(url).status_code == 200
    done = client.post(url, {"emails": "ann@x.example\nghost@x.example"}, follow=True)
    text = done.content.decode()
    assert "Added 1 members" in text
    assert "ghost@x.example" in text
    assert group_member_count(group) == 1
    empty = client.post(url, {"emails": ""})
    assert "Paste emails or choose a file" in empty.content.decode()


def test_a_filter_that_cannot_match_anyone_is_refused_with_the_field_named(client, manager):
    client.force_login(manager)
    page = client.post(
        "/admin/loyalty/customergroup/add/",
        {
            "name": "Nobody",
            "orders_min": "5",
            "orders_max": "2",
            "recency_min": "9",
            "signed_up_from": "2026-05-01",
            "signed_up_to": "2026-04-01",
        },
    )
    assert page.status_code == 200  # the form again, with the errors
    errors = page.context["adminform"].form.errors
    assert errors["orders_max"] == ["This must not be below “orders at least”."]
    assert errors["signed_up_to"] == ["This must not be below “signed up from”."]
    assert errors["recency_min"] == ["Scores run from 1 to 5."]
    assert not CustomerGroup.objects.filter(name="Nobody").exists()
