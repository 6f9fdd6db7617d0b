"""Issue 15 in the browser: a program manager turns expiry on (the impact first), reads the dashboard on the home
page and the liability report; a member's page shows the batches; a support agent keeps the plain home page."""

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.actors import SystemActor
from loyalty.models import EntryKind, Member, ProgramSettings
from loyalty.services import Posting, entries_post_bulk
from loyalty.services.batches import open_batches
from loyalty.services.expiry import points_expire
from loyalty.services.totals import ledger_days_refresh
from tests.e2e.conftest import sign_in
from tests.factories import MemberFactory, TierFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SYSTEM = SystemActor("e2e history")


def _history():
    """Six months of dated earnings and debits for a few members (history loads carry when each fact happened)."""
    TierFactory(name="Bronze", threshold=0)
    TierFactory(name="Silver", threshold=500)
    TierFactory(name="Gold", threshold=2000)
    ProgramSettings.load()
    now = timezone.now()
    members = [MemberFactory(email=f"shopper{i}@shop.example") for i in range(6)]
    postings = []
    for i, member in enumerate(members):
        for week in range(26, 0, -3):
            at = now - timedelta(weeks=week, days=i)
            postings.append(Posting(member.pk, 40 + 10 * i + week, "Order", kind=EntryKind.EARN, at=at))
            if week % 9 == 0:
                postings.append(Posting(member.pk, -60, "Goodwill correction", at=at + timedelta(days=2)))
    entries_post_bulk(postings=postings, actor=SYSTEM, source="system", policy="cap")
    return members


def test_manager_turns_expiry_on_and_reads_the_dashboard_and_the_report(page, live_server, roles, shot):
    members = _history()
    manager = UserFactory(username="manager-max")
    manager.groups.add(roles["manager"])
    sign_in(page, live_server, "manager-max")

    # Expiry on: the impact first, then applied once confirmed.
    page.goto(f"{live_server.url}/admin/loyalty/programsettings/1/change/")
    page.select_option("#id_expiry_policy", "after_earning")
    page.fill("#id_expiry_period", "3")
    page.select_option("#id_expiry_unit", "months")
    page.click("input[name=_save]")
    page.wait_for_selector(".errornote, .errorlist")
    assert "would expire" in page.inner_text("#content")
    shot(page, "expiry-01-policy-impact")
    page.check("#id_expiry_confirmed")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    assert ProgramSettings.load().expiry_policy == "after_earning"

    run = points_expire()
    assert run.posted == len(members)
    ledger_days_refresh()

    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#program-dashboard svg")
    assert page.locator("#program-dashboard figure.chart svg").count() == 5
    assert "Points per week" in page.inner_text("#chart-flows")
    shot(page, "expiry-02-dashboard")

    page.click("text=Liability report")
    page.wait_for_selector("#liability-report")
    assert "By tier" in page.inner_text("#liability-report") and "Expirations" in page.inner_text(
        "#liability-by-source"
    )
    shot(page, "expiry-03-liability-today")
    past = (timezone.localdate() - timedelta(weeks=10)).isoformat()
    page.fill("#id_on", past)
    page.click("#liability-date input[type=submit]")
    page.wait_for_selector("#liability-total")
    assert past in page.inner_text("#liability-total")
    shot(page, "expiry-04-liability-ten-weeks-ago")

    page.goto(f"{live_server.url}/admin/loyalty/member/{members[0].pk}/change/")
    page.wait_for_selector("#member-batches")
    assert page.locator("#member-batches tr.batch-row").count() == len(
        open_batches(Member.objects.get(pk=members[0].pk))
    )
    shot(page, "expiry-05-member-batches")

    page.goto(f"{live_server.url}/admin/loyalty/member/?expiring=90")
    page.wait_for_selector("#result_list")
    shot(page, "expiry-06-members-expiring-within-90-days")


def test_a_support_agent_keeps_the_plain_home_page(page, live_server, roles, shot):
    _history()
    agent = UserFactory(username="agent-ann")
    agent.groups.add(roles["agent"])
    sign_in(page, live_server, "agent-ann")
    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#content-main")
    assert page.locator("#program-dashboard").count() == 0
    shot(page, "expiry-07-agent-home")
