"""Ids typed into addresses and forms that are not ids (Unicode digits pass str.isdigit(), huge numbers overflow
SQLite): the page says "not found" or ignores the value, never a server error."""

import pytest

from loyalty.ids import record_id
from loyalty.models import CustomerGroup
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

NOT_IDS = ["%C2%B2", "%D9%A3", "99999999999999999999999"]


def test_record_id_takes_ascii_digits_within_a_64_bit_key_only():
    assert record_id("42") == 42 and record_id(7) == 7
    for value in ["²", "٣", "-1", "0", "4.2", "", None, str(2**63)]:
        assert record_id(value) is None, value


@pytest.mark.parametrize("value", NOT_IDS)
@pytest.mark.parametrize(
    "address",
    [
        "/admin/imports/importjob/{}/change/",
        "/admin/imports/backfillrun/{}/change/",
        "/admin/loyalty/customergroup/{}/change/",
        "/admin/loyalty/groupaction/{}/change/",
    ],
)
def test_a_page_of_no_record_is_not_found(manager_client, address, value):
    answer = manager_client.get(address.format(value))
    assert answer.status_code in (302, 404)  # Django's admin redirects "doesn't exist" to the list


@pytest.mark.parametrize("value", ["²", "99999999999999999999999"])
def test_list_filters_ignore_a_value_that_is_no_id(manager_client, value):
    MemberFactory(email="ann@shop.example")
    CustomerGroup.objects.create(name="Everyone")  # Django shows (and applies) the filter once a group exists
    members = manager_client.get("/admin/loyalty/member/", {"group": value})
    assert members.status_code == 200 and len(members.context["cl"].result_list) == 0
    entries = manager_client.get("/admin/loyalty/ledgerentry/", {"by": value})
    assert entries.status_code == 200
