"""Reward tokens, members and orders uploads."""

from decimal import Decimal

import pytest

from imports.models import ImportStatus
from imports.services.jobs import ImportJobError, import_job_start_undo, import_job_undo
from loyalty.models import EarnRule, EarnRuleKind, EntryStatus, LedgerEntry, Member, Order, RewardToken, TokenStatus
from tests.factories import MemberFactory
from tests.imports.helpers import applied, checked

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversion(db):
    return EarnRule.objects.create(name="Referral", kind=EarnRuleKind.CONVERSION, points=250)


@pytest.fixture
def tokens(tiers, conversion):
    ann = MemberFactory(email="ann@shop.example")
    bob = MemberFactory(email="bob@shop.example")
    return {
        "T1": RewardToken.objects.create(token="T1", member=ann),
        "T2": RewardToken.objects.create(token="T2", member=bob),
        "T3": RewardToken.objects.create(token="T3", member=bob),
    }


def test_closed_tokens_credit_the_conversion_rule_once(tokens):
    job = applied(
        "token,status,email,amount\nT1,closed,ann@shop.example,120.50\nT2,Closed,,\nT9,closed,,\n", kind="tokens"
    )
    assert (job.applied, job.failed, job.points_credited) == (2, 1, 500)
    assert job.first_problems == [{"row": 4, "column": "token", "reason": "no reward token T9"}]
    t1 = RewardToken.objects.get(token="T1")
    assert (t1.status, t1.amount) == (TokenStatus.CLOSED, Decimal("120.50"))
    entry = LedgerEntry.objects.get(idempotency_key="token:T1")
    assert (entry.points, entry.reason) == (250, "Conversion: token T1 (Referral)")
    again = applied("token,status\nT1,closed\nT2,closed\n", kind="tokens")
    assert (again.applied, again.skipped) == (0, 2)
    assert Member.objects.get(email="ann@shop.example").available_points == 250


def test_a_rejected_token_rejects_its_pending_credit(tokens, conversion):
    conversion.hold_days = 30
    conversion.save()
    applied("token,status\nT2,closed\nT3,closed\n", kind="tokens")
    bob = Member.objects.get(email="bob@shop.example")
    assert (bob.available_points, bob.pending_points) == (0, 500)
    job = applied("token,status\nT2,rejected\nT1,rejected\n", kind="tokens")
    assert (job.applied, job.failed) == (2, 0)
    assert LedgerEntry.objects.get(idempotency_key="token:T2").status == EntryStatus.REJECTED
    assert RewardToken.objects.get(token="T1").status == TokenStatus.REJECTED
    bob.refresh_from_db()
    assert (bob.available_points, bob.pending_points) == (0, 250)
    refused = applied("token,status\nT1,closed\n", kind="tokens")
    assert refused.first_problems[0]["reason"] == "the token T1 was rejected: it cannot be credited"


def test_rejecting_a_token_whose_points_are_available_is_refused(tokens):
    applied("token,status\nT1,closed\n", kind="tokens")
    job = applied("token,status\nT1,rejected\n", kind="tokens")
    assert job.failed == 1
    assert "are already available: reverse entry #" in job.first_problems[0]["reason"]


def test_token_belonging_to_another_member_is_a_row_problem(tokens):
    job = checked("token,status,email\nT1,closed,bob@shop.example\nT1,closed,\nT2,maybe,\n", kind="tokens")
    assert [(p["row"], p["column"]) for p in job.first_problems] == [(2, "email"), (3, "token"), (4, "status")]


def test_undo_of_a_tokens_import_reverses_the_credits(tokens):
    job = applied("token,status\nT1,closed\n", kind="tokens")
    job = import_job_undo(job_id=job.pk)
    assert (job.status, job.undo_reversed) == (ImportStatus.UNDONE, 1)
    assert Member.objects.get(email="ann@shop.example").available_points == 0


def test_members_upsert_by_email_and_keep_what_empty_cells_leave(tiers):
    MemberFactory(email="ann@shop.example", first_name="Ann", customer_id="C-1")
    text = (
        "email,customer_id,first_name,last_name,signed_up_at\n"
        "ANN@shop.example,,Anne,,\n"
        "new@shop.example,C-9,New,Person,2024-03-01 10:00\n"
        "guest@shop.example,,,,\n"
        "bad@,,,,\n"
        "x@shop.example,C-1,,,\n"
        "y@shop.example,,,,31/12/2024\n"
    )
    job = applied(text, kind="members")
    assert (job.applied, job.failed) == (3, 3)
    assert [(p["row"], p["column"]) for p in job.first_problems] == [
        (5, "email"),
        (6, "customer_id"),
        (7, "signed_up_at"),
    ]
    ann = Member.objects.get(email="ann@shop.example")
    assert (ann.first_name, ann.customer_id) == ("Anne", "C-1")
    new = Member.objects.get(email="new@shop.example")
    assert (new.customer_id, new.signed_up_at.year, new.tier.name) == ("C-9", 2024, "Bronze")
    assert Member.objects.get(email="guest@shop.example").is_guest
    again = checked(text, kind="members")
    assert (again.to_apply, again.already_applied) == (0, 3)


def test_members_import_cannot_be_undone(tiers):
    job = applied("email\nann@shop.example\n", kind="members")
    with pytest.raises(ImportJobError, match="changes records, not points"):
        import_job_start_undo(job=job)


def test_orders_upsert_csv_orders_and_link_members(tiers):
    MemberFactory(email="ann@shop.example", customer_id="C-1")
    text = (
        "order_id;email;customer_id;total;currency;status;tags;placed_at\n"
        "1001;ann@shop.example;;19,90;eur;paid;vip;2023-05-01\n"
        "1002;guest@shop.example;;5.00;;cancelled;;2023-05-02T08:00:00+02:00\n"
        "1003;;C-1;abc;;paid;;2023-05-03\n"
        "1001;;;1;;;;2023-05-03\n"
    )
    job = applied(text, kind="orders")
    assert (job.applied, job.failed) == (2, 2)
    o1 = Order.objects.get(store="csv", store_order_id="1001")
    assert (o1.member.email, o1.total, o1.currency, o1.tags) == ("ann@shop.example", Decimal("19.90"), "EUR", "vip")
    o2 = Order.objects.get(store_order_id="1002")
    assert (o2.member, o2.cancelled, o2.email) == (None, True, "guest@shop.example")
    assert LedgerEntry.objects.count() == 0, "importing orders credits nothing by itself"
    again = applied(text.replace("19,90", "29,90"), kind="orders")
    assert (again.applied, again.skipped) == (1, 1)
    assert Order.objects.get(store_order_id="1001").total == Decimal("29.90")


def test_orders_csv_keeps_subtotal_tax_and_shipping(tiers):
    text = (
        "order_id,email,total,placed_at,subtotal,tax,shipping\n"
        "P-1,ann@shop.example,130.00,2023-05-01,100.00,20.00,10.00\n"
        "P-2,bob@shop.example,50.00,2023-05-01,,8.00,\n"
        "P-3,cy@shop.example,50.00,2023-05-01,40.00,-1.00,\n"
    )
    job = applied(text, kind="orders")
    assert (job.applied, job.failed) == (2, 1)
    first = Order.objects.get(store_order_id="P-1")
    assert (first.earnable_amount, first.tax_amount, first.shipping_amount) == (
        Decimal("100.00"),
        Decimal("20.00"),
        Decimal("10.00"),
    )
    second = Order.objects.get(store_order_id="P-2")
    assert (second.earnable_amount, second.tax_amount) == (None, Decimal("8.00"))
    again = applied(text.replace("100.00,20.00", "90.00,20.00"), kind="orders")
    assert (again.applied, again.skipped) == (1, 1)
    assert Order.objects.get(store_order_id="P-1").earnable_amount == Decimal("90.00")
