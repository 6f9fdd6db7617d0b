"""`manage.py reconcile_ledger`: exit 0 when every cached figure equals the ledger, 1 and the differences when not."""

import pytest
from django.core.management import call_command

from loyalty.models import Member, ProgramSettings
from loyalty.services import points_adjust
from loyalty.tasks import reconcile_ledger_nightly
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def test_clean_ledger_exits_zero(tiers, manager, capsys):
    points_adjust(member=MemberFactory(), points=700, reason="x", actor=manager)
    call_command("reconcile_ledger")
    assert "The ledger reconciles" in capsys.readouterr().out


def test_planted_difference_is_found_and_exits_one(tiers, manager, capsys):
    member = MemberFactory(email="planted@shop.example")
    points_adjust(member=member, points=700, reason="x", actor=manager)
    Member.objects.filter(pk=member.pk).update(available_points=9999)
    with pytest.raises(SystemExit) as exited:
        call_command("reconcile_ledger")
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert "planted@shop.example: available is 9999 but the ledger says 700" in captured.out
    assert "1 difference(s)" in captured.err
    reconcile_ledger_nightly()
    settings = ProgramSettings.load()
    assert settings.last_reconcile_ok is False and "planted@shop.example" in settings.last_reconcile_report
    Member.objects.filter(pk=member.pk).update(available_points=700)  # put it right for the closing check
    reconcile_ledger_nightly()
    assert ProgramSettings.load().last_reconcile_ok is True


def test_wrong_tier_is_a_difference(tiers, manager, capsys):
    member = MemberFactory()
    points_adjust(member=member, points=700, reason="x", actor=manager)
    Member.objects.filter(pk=member.pk).update(tier=tiers[2])
    with pytest.raises(SystemExit):
        call_command("reconcile_ledger")
    assert "tier is" in capsys.readouterr().out
    Member.objects.filter(pk=member.pk).update(tier=tiers[1])
