"""RFM scores: quintiles over members with orders, named segments, refreshed on demand and on schedule."""

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.management.commands.setup_periodic_tasks import SCHEDULES
from loyalty.models import CustomerGroup, MemberRFM, RFMSegment
from loyalty.selectors_groups import group_members
from loyalty.services.rfm import rfm_refresh, segment_for
from loyalty.tasks import rfm_refresh_task
from tests.factories import MemberFactory, OrderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ten_customers():
    """Customer k (1..10) ordered k times, $10*k each time, the last one 100-10k days ago; one member never ordered."""
    now = timezone.now()
    customers = []
    for k in range(1, 11):
        member = MemberFactory(email=f"c{k:02}@x.example")
        for n in range(k):
            OrderFactory(member=member, total=10 * k, placed_at=now - timedelta(days=100 - 10 * k + n * 0))
        customers.append(member)
    MemberFactory(email="never@x.example")
    return customers


def scores(member):
    rfm = MemberRFM.objects.get(member=member)
    return rfm.recency, rfm.frequency, rfm.monetary, rfm.segment


def test_quintile_scores_and_segments(ten_customers):
    result = rfm_refresh()
    assert result.members_scored == 10
    best, worst = ten_customers[-1], ten_customers[0]
    assert scores(best) == (5, 5, 5, RFMSegment.CHAMPIONS)
    assert scores(worst) == (1, 1, 1, RFMSegment.LOST)
    assert scores(ten_customers[4]) == (3, 3, 3, RFMSegment.LOYAL)
    assert scores(ten_customers[2]) == (2, 2, 2, RFMSegment.HIBERNATING)
    assert sorted(MemberRFM.objects.values_list("recency", flat=True)) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert result.by_segment == {"champions": 4, "loyal": 2, "hibernating": 2, "lost": 2}


def test_members_without_orders_get_no_scores(ten_customers):
    rfm_refresh()
    assert not MemberRFM.objects.filter(member__email="never@x.example").exists()


def test_refresh_rescores_from_the_current_orders(ten_customers):
    rfm_refresh()
    worst = ten_customers[0]
    for _ in range(20):
        OrderFactory(member=worst, total=500, placed_at=timezone.now())
    rfm_refresh()
    assert scores(worst) == (5, 5, 5, RFMSegment.CHAMPIONS)
    assert MemberRFM.objects.count() == 10


def test_a_refresh_changes_only_what_changed_adds_new_customers_and_drops_those_without_orders(ten_customers):
    rfm_refresh()
    first = dict(MemberRFM.objects.values_list("member_id", "computed_at"))
    gone, newcomer = ten_customers[4], MemberFactory(email="new@x.example")
    gone.orders.update(cancelled=True)
    OrderFactory(member=newcomer, total=1, placed_at=timezone.now() - timedelta(days=500))
    result = rfm_refresh()
    after = dict(MemberRFM.objects.values_list("member_id", "computed_at"))
    assert gone.pk not in after and newcomer.pk in after
    assert result.members_scored == 10 == len(after)
    assert scores(newcomer) == (1, 1, 1, RFMSegment.LOST)
    # The best customer's scores are the same as before: her row is not rewritten, it still says when it last changed.
    assert scores(ten_customers[9]) == (5, 5, 5, RFMSegment.CHAMPIONS)
    assert after[ten_customers[9].pk] == first[ten_customers[9].pk]


def test_cancelled_and_test_orders_do_not_count(ten_customers):
    OrderFactory(member=ten_customers[0], total=10_000, placed_at=timezone.now(), cancelled=True)
    OrderFactory(member=ten_customers[0], total=10_000, placed_at=timezone.now(), test=True)
    rfm_refresh()
    rfm = MemberRFM.objects.get(member=ten_customers[0])
    assert (rfm.order_count, rfm.total_spent, rfm.segment) == (1, 10, RFMSegment.LOST)


def test_segment_mapping_covers_every_score():
    found = {segment_for(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert found == set(RFMSegment.values)
    assert segment_for(5, 5, 5) == "champions"
    assert segment_for(4, 4, 3) == "loyal"
    assert segment_for(5, 1, 1) == "potential"
    assert segment_for(1, 5, 5) == "at_risk"
    assert segment_for(2, 2, 5) == "hibernating"
    assert segment_for(1, 1, 5) == "lost"


def test_groups_filter_by_segment_and_scores(ten_customers):
    rfm_refresh()
    at_top = CustomerGroup.objects.create(name="Champions", segment=RFMSegment.CHAMPIONS)
    frequent = CustomerGroup.objects.create(name="Frequent", frequency_min=5)
    assert group_members(at_top).count() == 4
    assert sorted(group_members(frequent).values_list("email", flat=True)) == ["c09@x.example", "c10@x.example"]


def test_scheduled_job_and_admin_button_refresh(ten_customers, client, manager):
    assert SCHEDULES["Nightly RFM scores"][0] == "loyalty.rfm_refresh"
    assert rfm_refresh_task.delay() is not None
    assert MemberRFM.objects.count() == 10
    MemberRFM.objects.all().delete()
    client.force_login(manager)
    done = client.post("/admin/loyalty/customergroup/refresh-rfm/", follow=True)
    assert "RFM scores are being refreshed" in done.content.decode()
    assert MemberRFM.objects.count() == 10
