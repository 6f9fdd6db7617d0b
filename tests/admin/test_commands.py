"""seed_demo builds a program whose ledger reconciles; the bench commands print their JSON on the last line."""

import itertools
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q

from devtools.bench_floor import BATCH_FLOOR_TABLE, FLOOR_TABLE, ledger_write_floor_s
from loyalty.models import EntryKind, LedgerEntry, Member, PointsBatch, RFMSegment

pytestmark = pytest.mark.django_db


def test_seed_demo_gives_every_member_exactly_k_entries_through_the_ledger():
    call_command("seed_demo", members=40, entries_per_member=3, quiet=True, stdout=StringIO())
    assert Member.objects.count() == 40
    # The demo's rewards and the expiry run's expirations come on top.
    history = Count("entries", filter=~Q(entries__kind__in=[EntryKind.REDEMPTION, EntryKind.EXPIRATION]))
    per_member = set(Member.objects.annotate(n=history).values_list("n", flat=True))
    # Capped goodwill debits on an empty balance post nothing (a shortfall instead), so a few members have fewer.
    assert max(per_member) == 3 and LedgerEntry.objects.count() >= 100
    call_command("seed_demo", members=40, entries_per_member=3, quiet=True, stdout=StringIO())
    assert Member.objects.count() == 40  # a second run adds nobody


def test_bench_admin_prints_the_pages_as_json():
    call_command("seed_demo", members=30, entries_per_member=4, quiet=True, stdout=StringIO())
    out = StringIO()
    call_command("bench_admin", repeat=1, stdout=out)
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    names = {page["name"] for page in figures["pages"]}
    assert {"members list", "members search by email", "members filter by tier", "member page"} <= names
    for page in figures["pages"]:
        assert page["ms"] > 0 and 0 < page["queries"] < 15, page
    # Printed beside the figures: a busy machine skews them.
    assert isinstance(figures.get("load_average_1m"), float) and figures["load_average_1m"] >= 0


def test_seed_demo_gives_a_history_to_members_a_stopped_run_left_without_one():
    call_command("seed_demo", members=20, entries_per_member=3, quiet=True, stdout=StringIO())
    # What a run stopped between inserting a chunk's members and posting their history leaves behind.
    Member.objects.bulk_create(
        Member(email=f"shopper{n}@demo.example", customer_id=str(7_000_000 + n)) for n in (20, 21)
    )
    call_command("seed_demo", members=30, entries_per_member=3, quiet=True, stdout=StringIO())
    without_history = Member.objects.annotate(n=Count("entries")).filter(n=0)
    assert Member.objects.count() == 30 and not without_history.exists()


def test_bench_rfm_scores_its_members_in_quintiles_and_prints_json():
    out = StringIO()
    call_command("bench_rfm", members=200, orders=500, stdout=out)
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert figures["members_scored"] == 200 == sum(figures["by_segment"].values())
    assert set(figures["by_segment"]) <= set(RFMSegment.values), figures["by_segment"]
    for timing in ("first_refresh_s", "refresh_s"):  # scored in quintiles, or it exits 1
        value = figures.get(timing)
        assert isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0, (timing, value)


@pytest.mark.django_db(transaction=True)
def test_bench_ledger_posts_every_entry_and_reconciles():
    call_command("seed_demo", members=5, entries_per_member=1, quiet=True, stdout=StringIO())
    before = LedgerEntry.objects.count()
    out = StringIO()
    call_command("bench_ledger", single=120, bulk=500, members=10, sessions=1, stdout=out)
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert figures["reconciles"] and figures["single_per_s"] > 0 and figures["bulk_per_s"] > 0
    # 100 posts alone, 120 by the sessions, 500 through the bulk path; every single post with its own key.
    assert LedgerEntry.objects.count() - before == 100 + 120 + 500
    assert LedgerEntry.objects.filter(reason="bench single", idempotency_key__startswith="admin:bench-").count() == 220
    # Its floor wrote 500 entries into a scratch copy of the ledger, gone afterwards; the ledger did not get them.
    assert figures["bulk_floor_per_s"] > 0 and figures["bulk_floor_required_guards_per_s"] > 0
    assert FLOOR_TABLE not in connection.introspection.table_names()


@pytest.mark.django_db(transaction=True)
def test_ledger_floor_has_the_ledgers_guards():
    """The floor is only a floor if its table checks what the ledger checks: here, an unknown member."""
    ids = [m.pk for m in Member.objects.bulk_create([Member(email=f"floor{n}@example.com") for n in range(3)])]
    for required_only, with_batches in itertools.product((False, True), (False, True)):
        options = {"required_only": required_only, "with_batches": with_batches}
        assert ledger_write_floor_s(ids, 30, **options) > 0
        with pytest.raises(IntegrityError):  # a member id that does not exist fails the foreign key at commit
            ledger_write_floor_s([max(ids) + 1000], 1, **options)
    assert not {FLOOR_TABLE, BATCH_FLOOR_TABLE} & set(connection.introspection.table_names())
    assert not PointsBatch.objects.exists()
    assert not LedgerEntry.objects.filter(reason="floor").exists()
    with transaction.atomic(), pytest.raises(RuntimeError, match="transaction of its own"):
        ledger_write_floor_s(ids, 1)  # its commit is part of what it measures


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("reconcile_ledger", "--limit", "0"),
        ("reconcile_ledger", "--limit", "-1"),
        ("bench_ledger", "--members", "0"),
        ("bench_admin", "--repeat", "0"),
        ("bench_import", "--rows", "-1"),
        ("bench_rfm", "--members", "zero"),
    ],
)
def test_sizes_and_limits_below_one_are_refused_with_the_value_named(command, option, value):
    with pytest.raises(CommandError, match=f"argument {option}: .*{value}"):
        call_command(command, option, value)


def test_expire_points_refuses_a_day_beyond_the_years_the_program_holds(db):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="outside the years 1900 to 2100"):
        call_command("expire_points", "--dry-run", "--as-of", "9999-12-31")
