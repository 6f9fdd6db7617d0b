"""The list pages' rows: links that keep the list's filters, a checkbox each, and words rather than codes."""

import pytest
from django.utils.formats import date_format
from django.utils.timezone import localtime

from tests.admin.conftest import ENTRIES_URL, MEMBERS_URL, member_with, pending_entry
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def test_list_rows_link_to_the_member_keeping_the_filters_and_carry_a_checkbox(agent_client):
    ann = MemberFactory(email="ann@shop.example", signed_up_at=None)
    page = agent_client.get(MEMBERS_URL, {"account": "guest"})
    html = page.content.decode()
    assert f'href="{MEMBERS_URL}{ann.pk}/change/?_changelist_filters=account%3Dguest"' in html
    assert f'<input type="checkbox" name="_selected_action" value="{ann.pk}" class="action-select"' in html


def test_entries_list_shows_kind_and_status_in_words_and_when_pending_points_become_available(agent_client):
    entry = pending_entry(member_with(0, email="ann@shop.example"), 300)
    html = agent_client.get(ENTRIES_URL, {"status__exact": "pending"}).content.decode()
    available_on = date_format(localtime(entry.hold_until), "DATE_FORMAT")  # "Dec. 14, 2026" in en-us
    assert '<td class="field-kind_label">Earn</td>' in html
    assert f'<td class="field-status_label">Pending: available on {available_on}</td>' in html
