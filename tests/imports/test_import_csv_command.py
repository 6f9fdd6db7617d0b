"""manage.py import_csv: the same service for cron; exit 0 when the file applied, 1 with the problems."""

import pytest
from django.core.management import call_command

from imports.models import ImportJob
from loyalty.models import LedgerEntry, Member
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def csv_file(tmp_path, tiers):
    MemberFactory(email="ann@shop.example")

    def write(text):
        path = tmp_path / "points.csv"
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


def run(*args):
    with pytest.raises(SystemExit) as exit_info:
        call_command("import_csv", *args)
    return exit_info.value.code


def test_applies_and_exits_0(csv_file, manager, capsys):
    path = csv_file("email,points\nann@shop.example,40\n")
    assert run(path, "--kind", "points", "--reason", "Cron", "--as", manager.username) == 0
    out = capsys.readouterr().out
    assert "1 rows applied" in out and "40 points credited" in out
    entry = LedgerEntry.objects.get()
    assert (entry.reason, entry.actor_user_id) == ("Cron", manager.pk)


def test_exits_1_with_the_problems(csv_file, capsys):
    path = csv_file("email,points\nann@shop.example,40\nnobody@shop.example,5\n")
    assert run(path, "--kind", "points") == 1
    err = capsys.readouterr().err
    assert "Row 3 (email): no member has the email nobody@shop.example" in err
    assert Member.objects.get(email="ann@shop.example").available_points == 40


def test_dry_run_applies_nothing(csv_file, capsys):
    path = csv_file("email,points\nann@shop.example,40\n")
    assert run(path, "--kind", "points", "--dry-run") == 0
    assert "1 to apply" in capsys.readouterr().out
    assert LedgerEntry.objects.count() == 0


def test_a_refused_file_exits_1_and_says_why(csv_file, capsys):
    path = csv_file("email,amount\nann@shop.example,40\n")
    assert run(path, "--kind", "points") == 1
    assert "The file has no points column" in capsys.readouterr().err


def test_the_same_file_twice_applies_once(csv_file, capsys):
    path = csv_file("email,points\nann@shop.example,40\n")
    run(path, "--kind", "points")
    assert run(path, "--kind", "points") == 0
    first = ImportJob.objects.order_by("pk").first()
    assert f"This file was uploaded before as job #{first.pk}" in capsys.readouterr().out
    assert Member.objects.get(email="ann@shop.example").available_points == 40


def test_a_user_who_is_not_staff_and_an_overlong_reason_are_refused_before_anything_is_read(csv_file):
    from django.core.management import CommandError

    from tests.factories import UserFactory

    path = csv_file("email,points\nann@shop.example,40\n")
    shopper = UserFactory(username="shopper", is_staff=False)
    with pytest.raises(CommandError, match="No active staff user 'shopper'"):
        call_command("import_csv", path, "--kind", "points", "--as", shopper.username)
    with pytest.raises(CommandError, match="--reason is 501 characters long; an entry holds at most 500"):
        call_command("import_csv", path, "--kind", "points", "--reason", "x" * 501)
    assert not ImportJob.objects.exists() and not LedgerEntry.objects.exists()
