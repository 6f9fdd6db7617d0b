"""Reward past actions: preview, run, re-run, hold, guests, live earnings, undo, the command and the admin pages."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection

from imports.models import BackfillRun, BackfillStatus
from imports.services import backfill as service
from loyalty.actors import SystemActor
from loyalty.errors import LoyaltyError
from loyalty.models import EntryStatus, LedgerEntry, Member, OrderRefund, ProgramSettings
from loyalty.services import points_earn
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a service and then what it queued on commit (the task), as a real commit would."""

    def call(fn, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(**kwargs)

    return call


def balances():
    return dict(Member.objects.values_list("email", "available_points"))


def test_preview_counts_what_a_run_would_credit(history):
    preview = service.backfill_preview()
    assert (preview.members, preview.orders, preview.points) == (2, 4, 400 + 100 + 50 + 30 + 20)
    assert [(line.name, line.credits, line.points_total) for line in preview.lines] == [
        ("Sign up", 2, 400),
        ("Place an order", 4, 200),
    ]
    assert not LedgerEntry.objects.exists()


def test_run_credits_members_and_guests(history, manager, committed):
    run = committed(service.backfill_run_create, actor=manager)
    run.refresh_from_db()
    assert run.status == BackfillStatus.DONE
    assert (run.members_credited, run.orders_credited, run.points_credited) == (2, 4, 600)
    assert run.progress == 100
    assert balances() == {"ann@x.example": 350, "bob@x.example": 30, "cy@x.example": 20, "dan@x.example": 200}
    entries = LedgerEntry.objects.filter(source="backfill", source_ref=run.pk)
    assert entries.count() == 6
    assert {e.actor_user_id for e in entries} == {manager.pk}
    reasons = set(entries.values_list("reason", flat=True))
    assert "Reward past actions: order A2 (Place an order)" in reasons
    assert "Reward past actions: sign-up (Sign up)" in reasons
    assert LedgerEntry.objects.filter(idempotency_key__startswith="signup:", source="backfill").count() == 2
    ann = Member.objects.get(email="ann@x.example")
    assert ann.tier.name == "Bronze" and ann.lifetime_points == 350


def test_run_records_the_rules_and_values_it_applied(history, rules):
    run = service.backfill_run_create(actor=SystemActor("tests"), queue=False)
    signup, order = rules
    signup.points = 999  # changed after confirming: the run applies what it recorded
    signup.save()
    service.backfill_run_apply(run_id=run.pk)
    run.refresh_from_db()
    assert [(r["name"], r["points"], r["points_per_currency_unit"]) for r in run.rules] == [
        ("Sign up", 200, None),
        ("Place an order", 0, "1.0000"),
    ]
    assert balances()["dan@x.example"] == 200


def test_a_second_run_credits_only_what_is_new(history, manager, committed, start):
    committed(service.backfill_run_create, actor=manager)
    OrderFactory(member=history[1], total=Decimal("12.00"), placed_at=start - timedelta(days=300))
    preview = service.backfill_preview()
    assert (preview.members, preview.orders, preview.points) == (0, 1, 12)
    second = committed(service.backfill_run_create, actor=manager)
    second.refresh_from_db()
    assert (second.members_credited, second.orders_credited, second.points_credited) == (0, 1, 12)
    assert balances()["bob@x.example"] == 42


def test_redelivered_run_posts_nothing_twice(history, manager, committed):
    run = committed(service.backfill_run_create, actor=manager)
    BackfillRun.objects.filter(pk=run.pk).update(status=BackfillStatus.FAILED)  # as if the worker died at the end
    again = service.backfill_run_apply(run_id=run.pk)
    # The summary still tells what the run credited in all, and nothing was credited twice.
    assert (again.status, again.points_credited, again.already_credited) == (BackfillStatus.DONE, 600, 0)
    assert LedgerEntry.objects.filter(source="backfill").count() == 6
    assert balances()["ann@x.example"] == 350


def test_recent_actions_are_pending_for_the_hold_days(history, rules, committed, manager, start):
    order_rule = rules[1]
    order_rule.hold_days = 30
    order_rule.save()
    committed(service.backfill_run_create, actor=manager)
    cy = Member.objects.get(email="cy@x.example")  # ordered 15 days ago: 15 more days to wait
    assert (cy.available_points, cy.pending_points) == (0, 20)
    entry = LedgerEntry.objects.get(member=cy)
    assert entry.status == EntryStatus.PENDING
    assert abs(entry.hold_until - (start - timedelta(days=5) + timedelta(days=30))) < timedelta(seconds=1)
    ann = Member.objects.get(email="ann@x.example")  # ordered long ago: available at once
    assert (ann.available_points, ann.pending_points) == (350, 0)


def test_orders_the_live_path_credited_are_skipped(history, rules, system, start):
    order = history[0].orders.get(store_order_id="A1")
    points_earn(
        member=history[0],
        points=100,
        reason="New conversion",
        actor=system,
        source="order",
        source_ref=order.pk,
        earn_rule=rules[1],
        idempotency_key=f"order:{order.pk}:rule:{rules[1].pk}",
    )
    assert service.backfill_preview().orders == 3


def test_sign_ups_credited_by_staff_are_skipped(history, rules, system):
    points_earn(
        member=history[3],
        points=200,
        reason="Signed up",
        actor=system,
        source="admin",
        earn_rule=rules[0],
        idempotency_key=f"signup:{history[3].pk}:rule:{rules[0].pk}",
    )
    assert service.backfill_preview().members == 1


def test_partially_refunded_order_earns_on_what_was_kept(history, start):
    order = OrderFactory(
        member=history[1],
        total=Decimal("100.00"),
        financial_status="partially_refunded",
        placed_at=start - timedelta(days=3),
    )
    OrderRefund.objects.create(order=order, store_refund_id="R1", amount=Decimal("40.50"))
    preview = service.backfill_preview()
    assert preview.lines[1].points_total == 200 + 59


def test_orders_with_a_revert_tag_earn_nothing(history, start):
    ProgramSettings.objects.filter(pk=1).update(revert_tags="fraud, test")
    OrderFactory(member=history[1], total=Decimal("70.00"), tags="vip, Fraud", placed_at=start - timedelta(days=3))
    assert service.backfill_preview().orders == 4


def test_a_database_error_in_a_run_is_recorded_as_it_was(history, manager, monkeypatch):
    """The run's error names what the database refused, not the aborted transaction's later complaints."""
    from loyalty.services import ledger_bulk

    def broken_insert(**kwargs):
        with connection.cursor() as cur:
            cur.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr(ledger_bulk, "_insert_entries", broken_insert)
    run = service.backfill_run_create(actor=manager, queue=False)
    with pytest.raises(DatabaseError, match="no_such_table"):
        service.backfill_run_apply(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == BackfillStatus.FAILED and "no_such_table" in run.error
    assert not LedgerEntry.objects.exists()


def test_undo_reverses_the_whole_run(history, manager, committed):
    run = committed(service.backfill_run_create, actor=manager)
    committed(service.backfill_undo_request, run=run, actor=manager)
    run.refresh_from_db()
    assert (run.status, run.undo_reversed) == (BackfillStatus.UNDONE, 6)
    assert set(balances().values()) == {0}
    assert LedgerEntry.objects.filter(source="backfill", source_ref=run.pk, kind="reversal").count() == 6
    with pytest.raises(LoyaltyError, match="only a finished run can be undone"):
        service.backfill_undo_request(run=run, actor=manager)
    # The undone run frees what it credited: a new run (after fixing a way to earn, say) credits it again, once.
    assert service.backfill_preview().points == run.points_credited
    again = committed(service.backfill_run_create, actor=manager)
    again.refresh_from_db()
    assert (again.status, again.points_credited) == (BackfillStatus.DONE, run.points_credited)
    assert service.backfill_preview().points == 0
    third = committed(service.backfill_run_create, actor=manager)
    third.refresh_from_db()
    assert (third.points_credited, third.already_credited) == (0, 6)


def test_one_run_at_a_time(history, manager):
    service.backfill_run_create(actor=manager, queue=False)
    with pytest.raises(LoyaltyError, match="still queued"):
        service.backfill_run_create(actor=manager, queue=False)


def test_nothing_to_credit_without_active_rules(start, db):
    with pytest.raises(LoyaltyError, match="nothing to credit"):
        service.backfill_run_create(actor=SystemActor("tests"))


def test_command_dry_run_and_run(history, capsys):
    call_command("backfill_past_actions", "--dry-run")
    out = capsys.readouterr().out
    assert "In all: 2 members, 4 orders, 600 points." in out
    assert "Dry run: nothing credited." in out
    assert not LedgerEntry.objects.exists()
    call_command("backfill_past_actions")
    out = capsys.readouterr().out
    assert "done: 2 members, 4 orders, 600 points" in out
    assert balances()["ann@x.example"] == 350
    call_command("backfill_past_actions")
    assert "done: 0 members, 0 orders, 0 points (6 already credited before)" in capsys.readouterr().out


def test_admin_preview_confirm_progress_and_undo(history, client, manager, django_capture_on_commit_callbacks):
    client.force_login(manager)
    page = client.get("/admin/imports/backfillrun/add/")
    text = page.content.decode()
    assert page.status_code == 200
    assert "2 members, 4 orders" in text and ">600<" in text
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post("/admin/imports/backfillrun/add/", {"confirm": "yes"}, follow=True)
    assert "Reward past actions started" in done.content.decode()
    run = BackfillRun.objects.get()
    status = client.get(f"/admin/imports/backfillrun/{run.pk}/status.json").json()
    assert (status["progress"], status["finished"]) == (100, True)
    assert "2 members and 4 orders credited, 600 points" in status["summary"]
    page = client.get(f"/admin/imports/backfillrun/{run.pk}/change/")
    assert "Undo run" in page.content.decode() and "Place an order" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/admin/imports/backfillrun/{run.pk}/undo/", {"post": "yes", "action_token": "t1"})
    assert set(balances().values()) == {0}
    assert client.get(f"/admin/imports/backfillrun/{run.pk}/status.json").json()["status"] == "undone"


def test_demo_history_gives_the_demo_something_to_reward(db, rules, capsys):
    call_command("seed_demo_history", "--members", "20")
    assert "Added 20 pre-program customers" in capsys.readouterr().out
    preview = service.backfill_preview()
    assert preview.members == 16  # one in five is a guest: orders only
    assert preview.orders > 0 and preview.points > 0
    call_command("seed_demo_history")
    assert "already there" in capsys.readouterr().out
