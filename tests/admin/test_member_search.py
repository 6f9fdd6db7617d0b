"""The members list's search: an email or a customer id goes straight to its index; names are found by any part."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.admin.conftest import MEMBERS_URL
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def found(client, term):
    page = client.get(MEMBERS_URL, {"q": term})
    assert page.status_code == 200
    return sorted(member.email for member in page.context["cl"].result_list)


@pytest.fixture
def members(db):
    return {
        "ada": MemberFactory(email="ada@shop.example", first_name="Ada", last_name="Lovelace", customer_id="7001"),
        "ada_org": MemberFactory(email="ada@shop.example.org", first_name="Ada", last_name="Byron"),
        "bob": MemberFactory(email="bob7001@shop.example", first_name="Bob", last_name="Baker", customer_id="88"),
    }


def test_a_full_email_finds_that_member_only_whatever_its_case(agent_client, members):
    # ada@shop.example.org starts with the same letters: an exact address wins over the longer one.
    assert found(agent_client, "  Ada@Shop.Example ") == ["ada@shop.example"]


def test_the_start_of_an_email_finds_every_member_whose_address_begins_with_it(agent_client, members):
    assert found(agent_client, "ADA@shop.ex") == ["ada@shop.example", "ada@shop.example.org"]


def test_an_unknown_email_finds_nobody_and_says_so(agent_client, members):
    page = agent_client.get(MEMBERS_URL, {"q": "nobody@shop.example"})
    assert list(page.context["cl"].result_list) == []
    assert b"0 members" in page.content


def test_a_domain_alone_still_finds_members_by_part_of_their_email(agent_client, members):
    assert found(agent_client, "@shop.example.org") == ["ada@shop.example.org"]


def test_a_customer_id_finds_its_member_before_emails_that_contain_the_digits(agent_client, members):
    assert found(agent_client, "7001") == ["ada@shop.example"]


def test_digits_that_are_no_customer_id_search_emails_and_names(agent_client, members):
    MemberFactory(email="carla1984@shop.example", customer_id="5")
    assert found(agent_client, "1984") == ["carla1984@shop.example"]


def test_a_name_is_found_by_any_part_of_it(agent_client, members):
    assert found(agent_client, "lovel") == ["ada@shop.example"]
    assert found(agent_client, "ada") == ["ada@shop.example", "ada@shop.example.org"]


def test_an_email_search_runs_no_contains_scan(agent_client, members):
    """A "contains" search reads every member (UPPER(email) LIKE '%...%'); an email must use its index instead."""
    with CaptureQueriesContext(connection) as captured:
        assert found(agent_client, "ada@shop.ex") == ["ada@shop.example", "ada@shop.example.org"]
    member_queries = [q["sql"] for q in captured.captured_queries if '"loyalty_member"."email"' in q["sql"]]
    assert member_queries and not any("%ada@shop.ex" in sql or "UPPER(" in sql for sql in member_queries)
