"""Settling an order's points: bring them to what the order's facts say, once per fact, in any order of arrival.

For an order that does not meet a full revert, in this order (earning and reopening only for an order that earns:
paid, a member's, not a test, placed since the program started; edits and refunds for whatever it earned):

1. **Reopened**: its points were taken back in full because of its state (cancelled, refunded, tagged) and it is
   paid again: the next reopening earns again, under keys of its own.
2. **Edited**: a newer version changed its earnable amount: each way to earn it earned under is brought to what the
   new amount gives, rate x new - rate x old: a top-up, or a take-back from its earnings (newest first), keyed by
   the reopening and the order's version.
3. **Earned**: each active way to earn that has not credited this reopening yet credits it (key per reopening).
4. **Refunded** (reverts on for partial refunds): each refund takes back floor(points x refunded share of the
   earnable amount), keyed by the refund and the reopening; never more than is left of the earnings.

An order that meets a full revert (reverts on, and cancelled, refunded or tagged as configured) has every earning
that still holds points reversed once (pending -> rejected, active -> a reversal of what is left); it earns nothing
while the revert holds. Points already spent follow the automatic-revert policy (ledger.entry_take_back and
entry_reverse; "cap" records the shortfall, never more than the earning still owes).
"""

import logging
from dataclasses import dataclass

from ...errors import LoyaltyError
from ...keys import (
    order_earning_key,
    order_edit_take_back_key,
    order_refund_take_back_key,
    order_refund_take_back_key_before_edits,
    order_revert_key,
    order_top_up_key,
    order_version,
)
from ...models import EarnRule, EarnRuleKind, EntryKind, EntrySource, Order, ProgramSettings
from ...rules import hold_days, hold_until
from ..ledger import entry_reverse, entry_take_back, points_earn
from .amounts import earnable_amount, points_for_amount, refund_earnable_amount, refund_share
from .facts import PAID_STATUSES, REFUNDED, OrderOutcome
from .ledger_state import OrderLedger, order_ledger

log = logging.getLogger(__name__)


@dataclass
class SettleContext:
    """What settling an order reads that is the same for every order: loaded once for a batch of webhook events."""

    program: ProgramSettings
    rules: list[EarnRule]
    # The caller runs each order in its own savepoint and takes a conflict (IntegrityError: another worker created the
    # same order or shopper a moment ago) as a reason to run it again; the savepoints inside are then left out.
    in_savepoint: bool = False


def settle_context(*, in_savepoint: bool = False) -> SettleContext:
    """The program's settings and its "Place an order" ways to earn, as they are now."""
    rules = list(EarnRule.objects.filter(kind=EarnRuleKind.ORDER).order_by("pk"))
    return SettleContext(program=ProgramSettings.load(), rules=rules, in_savepoint=in_savepoint)


def full_revert_reason(order: Order, program: ProgramSettings) -> str:
    """Why the order's points must all go back ("" when they stay), following the program's revert settings."""
    if not program.revert_enabled:
        return ""
    if order.cancelled and program.revert_on_cancelled:
        return "cancelled"
    if order.financial_status == REFUNDED and program.revert_on_refunded:
        return "refunded"
    tagged = sorted(set(order.tag_list()) & set(program.revert_tag_list()))
    if tagged:
        return f"tagged {', '.join(tagged)}"
    return ""


def earn_refusal(order: Order, program: ProgramSettings) -> str:
    """Why the order earns nothing ("" when it earns)."""
    if order.test:
        return "a test order earns nothing"
    if not order.member_id:
        return "no customer email: nobody to credit"
    if order.financial_status not in PAID_STATUSES:
        return f"not paid yet ({order.financial_status or 'no financial status'})"
    if order.placed_at < program.program_started_at:
        return "placed before the program started (Reward past actions credits it)"
    return ""


def order_rule_points(rule: EarnRule, order: Order, program: ProgramSettings | None = None) -> int:
    """Points a "Place an order" way to earn gives the order today: on its earnable amount, or its fixed points."""
    return points_for_amount(rule, earnable_amount(order, program or ProgramSettings.load()))


def settle(order: Order, outcome: OrderOutcome, *, actor, context=None, new=False, refunds=None, previous=None):
    """Earn what is due and take back what must go.

    `new`: the order was created in this transaction (nothing on the ledger can name it yet); `refunds`: all of its
    refunds when the caller has them at hand; `previous`: its parts (amounts.OrderParts) before this update, when a
    newer version of the order replaced them.
    """
    context = context or settle_context()
    program = context.program
    ledger = OrderLedger() if new else order_ledger(order, context.rules)
    if reason := full_revert_reason(order, program):
        if _revert_all(order, ledger, outcome, program, reason=reason, actor=actor) and not order.points_reverted:
            _mark(order, points_reverted=True)
        return
    refusal = earn_refusal(order, program)
    if refusal and not ledger.earnings:
        outcome.notes.append(refusal)
        return
    if order.points_reverted and not refusal:
        _mark(order, points_reverted=False, reopenings=order.reopenings + 1)
        outcome.notes.append(f"paid again after its points went back: reopening {order.reopenings} earns again")
    amount = earnable_amount(order, program)
    # Edits and refunds follow what an order earned, whichever path credited it (Reward past actions credits orders
    # placed before the program started); only new earnings wait for an order that earns.
    if previous is not None and ledger.earnings:
        _follow_edit(
            order, ledger, outcome, context, before=earnable_amount(previous, program), now=amount, actor=actor
        )
    if not refusal:
        ledger.add(_earn(order, ledger, context, outcome, amount, actor=actor, new=new))
    if ledger.earnings and program.revert_enabled and program.revert_on_partially_refunded:
        _take_back_refunds(order, ledger, outcome, context, amount, actor=actor, refunds=refunds)


def _mark(order: Order, **fields) -> None:
    """Record where the order's earning stands (the caller holds the order's row lock)."""
    for name, value in fields.items():
        setattr(order, name, value)
    Order.objects.filter(pk=order.pk).update(**fields)


def _hold_until(order: Order, rule: EarnRule, program: ProgramSettings):
    """Points stay pending for the rule's hold days (else the program's default), counted from the order's placing."""
    days = hold_days(rule_hold_days=rule.hold_days, program_default=program.hold_days_default)
    return hold_until(at=order.placed_at, days=days)


def _credited_rules(order: Order, ledger: OrderLedger, rules) -> list[EarnRule]:
    """The ways to earn that credited the order's current reopening and still hold points from it."""
    credited = []
    for rule in rules:
        if order_earning_key(order.pk, rule.pk, order.reopenings) not in ledger.keys:
            continue
        if any(ledger.is_live(entry) for entry in ledger.of_rule(rule.pk)):
            credited.append(rule)
    return credited


# ---------------------------------------------------------------------------------------------------------------
# Earning


def _earn(order, ledger, context, outcome, amount, *, actor, new=False) -> list:
    """Credit every active way to earn that has not credited this reopening yet; returns the new earnings."""
    program = context.program
    # A batch's new order holds its member locked and fresh (found with FOR UPDATE, or just created).
    member_locked = new and context.in_savepoint
    posted = []
    for rule in context.rules:
        key = order_earning_key(order.pk, rule.pk, order.reopenings)
        points = points_for_amount(rule, amount)
        if not rule.active or key in ledger.keys or points <= 0:
            continue
        result = points_earn(
            member=order.member if member_locked else order.member_id,
            points=points,
            reason=f"{rule.name}: order {order}",
            actor=actor,
            source=EntrySource.ORDER,
            source_ref=order.pk,
            earn_rule=rule,
            idempotency_key=key,
            hold_until=_hold_until(order, rule, program),
            savepoint=not context.in_savepoint,
            key_is_new=new,  # the key names the order's new primary key
            member_locked=member_locked,
        )
        if result.posted:
            outcome.notes.append(f"earned {points:+,} ({result.entry.get_status_display().lower()})")
            posted.append(result.entry)
    return posted


def _follow_edit(order, ledger, outcome, context, *, before, now, actor) -> None:
    """Bring each earning to what the order's new earnable amount gives: a top-up or a take-back for this version."""
    if before == now:
        return
    version = order_version(order.updated_at)
    for rule in _credited_rules(order, ledger, context.rules):
        change = points_for_amount(rule, now) - points_for_amount(rule, before)
        if change > 0 and rule.active:
            _top_up(order, ledger, outcome, context, rule, change, version=version, actor=actor)
        elif change < 0:
            _take_back(
                order,
                ledger,
                outcome,
                context.program,
                earnings=ledger.of_rule(rule.pk),
                points=-change,
                key_for=lambda entry, rule=rule: order_edit_take_back_key(
                    order.pk, rule.pk, order.reopenings, version, entry.pk
                ),
                reason=f"Order {order} edited: {before} -> {now} {order.currency}",
                label="edited down",
                actor=actor,
            )


def _top_up(order, ledger, outcome, context, rule, points, *, version, actor) -> None:
    key = order_top_up_key(order.pk, rule.pk, order.reopenings, version)
    if key in ledger.keys:
        return
    result = points_earn(
        member=order.member_id,
        points=points,
        reason=f"{rule.name}: order {order} edited up",
        actor=actor,
        source=EntrySource.ORDER,
        source_ref=order.pk,
        earn_rule=rule,
        idempotency_key=key,
        hold_until=_hold_until(order, rule, context.program),
        savepoint=not context.in_savepoint,
    )
    if result.posted:
        ledger.add([result.entry])
        outcome.notes.append(f"edited up: earned {points:+,} more ({result.entry.get_status_display().lower()})")


# ---------------------------------------------------------------------------------------------------------------
# Taking back


def _take_back(order, ledger, outcome, program, *, earnings, points, key_for, reason, label, actor, also=()) -> None:
    """Take `points` back from the earnings, newest first, each part keyed by key_for(earning).

    A fact is applied once: when any of its keys (or one of `also`, an older form of them) is used, nothing is done.
    """
    if any(key_for(entry) in ledger.keys for entry in earnings) or any(key in ledger.keys for key in also):
        return
    taken = short = 0
    for entry in sorted(earnings, key=lambda e: e.pk, reverse=True):
        if points - taken - short <= 0:
            break
        if not ledger.is_live(entry):
            continue
        key = key_for(entry)
        result = entry_take_back(
            entry=entry,
            points=points - taken - short,
            reason=reason,
            actor=actor,
            policy=program.revert_negative_balance_policy,
            source=EntrySource.ORDER,
            source_ref=order.pk,
            idempotency_key=key,
        )
        if result.entry is not None or result.shortfall:
            ledger.keys.add(key)
        if result.already_applied:
            continue
        taken -= result.entry.points if result.entry else 0
        short += result.shortfall
    if taken or short:
        note = f"{label}: took back {taken:,}"
        if short:
            note += f" ({short:,} already spent, recorded as a shortfall)"
        outcome.notes.append(note)


def _take_back_refunds(order, ledger, outcome, context, amount, *, actor, refunds=None) -> None:
    """Each refund takes back its share of each way to earn that credited the current reopening, once."""
    if refunds is None:
        refunds = list(order.refunds.order_by("created_at", "pk"))
    else:
        refunds = sorted(refunds, key=lambda refund: (refund.created_at, refund.pk))
    rules = _credited_rules(order, ledger, context.rules)
    counted = {rule.pk: _refunds_counted_until(order, ledger, rule) for rule in rules}
    for refund in refunds:
        refunded = refund_earnable_amount(refund, order, context.program, amount)
        for rule in rules:
            share = refund_share(points_for_amount(rule, amount), refunded, amount)
            if share <= 0 or (counted[rule.pk] and refund.recorded_at <= counted[rule.pk]):
                continue
            before_edits = (
                [] if order.reopenings else [order_refund_take_back_key_before_edits(order.pk, refund.pk, rule.pk)]
            )
            _take_back(
                order,
                ledger,
                outcome,
                context.program,
                earnings=ledger.of_rule(rule.pk),
                points=share,
                key_for=lambda entry, rule=rule, refund=refund: order_refund_take_back_key(
                    order.pk, refund.pk, rule.pk, order.reopenings, entry.pk
                ),
                also=before_edits,
                reason=f"Order {order}: refund of {refund.amount} {order.currency}",
                label=f"refund {refund.store_refund_id}",
                actor=actor,
            )


def _refunds_counted_until(order, ledger, rule):
    """When the way to earn's first earning was credited by Reward past actions: it earned on what was kept, so the
    refunds recorded by then are in it already (None otherwise)."""
    if order.reopenings:
        return None
    key = order_earning_key(order.pk, rule.pk)
    for entry in ledger.of_rule(rule.pk):
        if entry.idempotency_key == key and entry.source == EntrySource.BACKFILL:
            return entry.created_at
    return None


def settle_refunds(order: Order, outcome: OrderOutcome, *, actor, context=None) -> None:
    """Take back the shares of the order's recorded refunds not taken back yet (keyed as a live refund), after a path
    that credits an order by hand (New conversions) credited it."""
    context = context or settle_context()
    program = context.program
    if full_revert_reason(order, program):
        return
    if program.revert_enabled and program.revert_on_partially_refunded:
        ledger = order_ledger(order, context.rules)
        _take_back_refunds(order, ledger, outcome, context, earnable_amount(order, program), actor=actor)


def _revert_all(order, ledger, outcome, program, *, reason, actor) -> bool:
    """Reverse every earning that still holds points, once each; returns whether anything went back."""
    reverted = False
    for entry in ledger.earnings:
        if not ledger.is_live(entry):
            continue
        rule_id = entry.earn_rule_id
        first = entry.idempotency_key == order_earning_key(order.pk, rule_id)
        try:
            result = entry_reverse(
                entry=entry,
                reason=f"Order {order} {reason}",
                actor=actor,
                policy=program.revert_negative_balance_policy,
                source=EntrySource.ORDER,
                source_ref=order.pk,
                idempotency_key=order_revert_key(order.pk, rule_id, entry.pk, first_earning=first),
            )
        except LoyaltyError as exc:
            # Taken back in full by partial refunds (or recorded as not recovered) already: nothing is left.
            log.info("order %s: %s", order.pk, exc)
            continue
        if result.already_applied:
            continue
        reverted = True
        ledger.reversed_ids.add(entry.pk)
        outcome.notes.append(_revert_note(result, reason))
    return reverted


def _revert_note(result, reason) -> str:
    if result.entry is not None and result.entry.kind == EntryKind.EARN:
        return f"{reason}: pending {result.entry.points:+,} rejected"
    note = f"{reason}: took back {-(result.entry.points if result.entry else 0):,}"
    if result.shortfall:
        note += f" ({result.shortfall:,} already spent, recorded as a shortfall)"
    return note
