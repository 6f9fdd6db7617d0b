"""Fixtures of the back-office tests: staff in their roles, members with points built through the ledger service."""

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.services import points_adjust, points_earn
from tests.factories import MemberFactory, RewardFactory

MEMBERS_URL = "/admin/loyalty/member/"
ENTRIES_URL = "/admin/loyalty/ledgerentry/"


@pytest.fixture
def reward(db):
    return RewardFactory(name="$5 off", points_cost=500)


def member_with(points=0, system=None, **fields):
    """A member whose available points were credited through the ledger service."""
    from loyalty.actors import SystemActor

    member = MemberFactory(**fields)
    if points:
        points_adjust(member=member, points=points, reason="Opening balance", actor=system or SystemActor("tests"))
    member.refresh_from_db()
    return member


def pending_entry(member, points=300):
    from loyalty.actors import SystemActor

    result = points_earn(
        member=member,
        points=points,
        reason="Order 1001",
        actor=SystemActor("tests"),
        source="order",
        hold_until=timezone.now() + timedelta(days=14),
    )
    return result.entry


def first_post(client, url, action, ids, **extra):
    """The first POST of an action, as the list's action bar sends it: it shows the intermediate page."""
    return client.post(url, {"action": action, "_selected_action": [str(i) for i in ids], "index": "0", **extra})


def confirm(client, url, action, ids, page, **fields):
    """The confirming POST: post=yes, the one-time token from the intermediate page, and the form's fields."""
    token = page.context["form"]["action_token"].value()
    data = {"action": action, "_selected_action": [str(i) for i in ids], "post": "yes", "action_token": token}
    data.update(fields)
    return client.post(url, data, follow=True)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]
