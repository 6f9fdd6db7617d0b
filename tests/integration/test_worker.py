"""The scheduled release job, run by a real worker on Redis against PostgreSQL."""

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.models import EntryStatus, LedgerEntry
from loyalty.services import points_earn
from loyalty.tasks import release_matured_pending
from tests.factories import MemberFactory
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration


def test_worker_releases_matured_pending_points(celery_worker_process, tiers, system):
    member = MemberFactory()
    result = points_earn(
        member=member,
        points=700,
        reason="Order 1",
        actor=system,
        source="order",
        hold_until=timezone.now() + timedelta(seconds=1),
    )
    assert result.entry.status == EntryStatus.PENDING
    member.refresh_from_db()
    assert (member.available_points, member.pending_points) == (0, 700)

    wait_for(lambda: timezone.now() > result.entry.hold_until, timeout=5, what="the hold to end")
    release_matured_pending.delay()

    wait_for(
        lambda: LedgerEntry.objects.get(pk=result.entry.pk).status == EntryStatus.ACTIVE,
        what="the worker to release the pending points",
    )
    member.refresh_from_db()
    assert (member.available_points, member.pending_points, member.lifetime_points) == (700, 0, 700)
    assert member.tier.name == "Silver"
