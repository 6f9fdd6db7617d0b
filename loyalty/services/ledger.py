"""The ledger service, one entry at a time: with ledger_bulk.py, the only code that writes entries or balances.

Every write locks the member's row first (SELECT ... FOR UPDATE; on SQLite the IMMEDIATE transaction holds the
database's write lock), reads the balance it is about to change, posts, updates the cached figures and recomputes the
tier in the same transaction. The rules (the policy, "set to", lifetime, reversibility, limits, the refusal
sentences) are loyalty/rules.py's and tiers/rules.py's; the staff policy (permission, per-action limit, daily total)
is staff.py's, checked here whatever page, job or command calls. Facts from outside carry an idempotency key: posting
one twice reports "already applied".
"""

import dataclasses
import secrets
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from tiers.models import TierChange
from tiers.rules import tier_for, tier_table

from .. import rules
from ..actors import SystemActor, actor_fields
from ..errors import LoyaltyError
from ..keys import live_key_sql
from ..models import (
    Coupon,
    EntryKind,
    EntrySource,
    EntryStatus,
    LedgerEntry,
    Member,
    NegativeBalancePolicy,
    ProgramSettings,
    Reward,
    Shortfall,
)
from ..rules import APPLY_TYPES, MAX_ACTION_POINTS, RELATIVE, SET_TO  # noqa: F401 - the services' public names
from .batches import batch_expired, batch_open, expiration_spent_through
from .staff import StaffPolicy, staff_policy

COUPON_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@dataclass
class PostResult:
    """What a single post did. `entry` is None when nothing was posted (already applied, or "set to" a balance
    the member already has, or a capped debit that could take nothing)."""

    entry: LedgerEntry | None = None
    already_applied: bool = False
    shortfall: int = 0
    member: Member | None = None

    @property
    def posted(self) -> bool:
        return self.entry is not None and not self.already_applied


def policy_or_default(policy: str | None) -> str:
    """The negative-balance policy to apply: the one given, else the program's (for staff actions and imports)."""
    if policy is None:
        return ProgramSettings.load().negative_balance_policy
    if policy not in NegativeBalancePolicy.values:
        raise ValueError(f"unknown negative-balance policy {policy!r}")
    return policy


def _check_policy(policy: str | None) -> None:
    if policy is not None and policy not in NegativeBalancePolicy.values:
        raise ValueError(f"unknown negative-balance policy {policy!r}")


def _decide(member: Member, *, points: int, apply_type: str, status: str, policy: str | None, what: str):
    """rules.decide, reading the program's policy only when a debit goes beyond what is available (most posts never
    need it, and a single post should not pay a query for it)."""
    change = points - member.available_points if apply_type == SET_TO else points
    if change >= 0 or member.available_points + change >= 0:
        policy = policy or NegativeBalancePolicy.FORBID  # not consulted: nothing is short
    else:
        policy = policy_or_default(policy)
    return rules.decide(
        available=member.available_points,
        points=points,
        apply_type=apply_type,
        status=status,
        policy=policy,
        what=what,
        email=member.email,
    )


# ---------------------------------------------------------------------------------------------------------------
# Building blocks (callers hold the member's lock)


def lock_member(member_id: int) -> Member:
    """Lock the member's row for the rest of the transaction and return it fresh."""
    try:
        return Member.objects.select_for_update().get(pk=member_id)
    except Member.DoesNotExist:
        raise LoyaltyError(f"Member #{member_id} does not exist.") from None


def _applied(key: str | None, member: Member) -> PostResult | None:
    """An "already applied" result when the (live) key was posted before: as an entry, or a shortfall that took
    nothing."""
    if not key:
        return None
    if entry := LedgerEntry.objects.filter(idempotency_key=key).first():
        return PostResult(entry=entry, already_applied=True, member=member)
    if Shortfall.objects.filter(idempotency_key=key).exists():
        return PostResult(already_applied=True, member=member)
    return None


def _live_and_applied(base_key: str | None, member: Member) -> tuple[str | None, PostResult | None]:
    """The fact's live key (loyalty.keys) and, when it was posted before, the "already applied" result: one query
    for the common case of a key never seen."""
    if not base_key:
        return None, None
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT k.live, EXISTS (SELECT 1 FROM loyalty_ledgerentry e WHERE e.idempotency_key = k.live)
                        OR EXISTS (SELECT 1 FROM loyalty_shortfall s WHERE s.idempotency_key = k.live)
                FROM (SELECT {live_key_sql("%s")} AS live) k""",
            [base_key, base_key],
        )
        key, seen = cursor.fetchone()
    return key, (_applied(key, member) if seen else None)


def _apply_to_balances(member: Member, *, points: int, status: str, counts: bool, sign: int = 1) -> bool:
    """Move the member's cached figures by one entry; returns whether lifetime changed."""
    delta = sign * points
    if status == EntryStatus.ACTIVE:
        member.available_points += delta
        if counts:
            member.lifetime_points += delta
            return True
    elif status == EntryStatus.PENDING:
        member.pending_points += delta
    return False


def _write_member(member: Member, *, lifetime_moved: bool, entry: LedgerEntry | None, reason: str) -> None:
    """Write the member's new figures; where lifetime moved, the tier follows it and a move is recorded."""
    tier_id = tier_for(member.lifetime_points, tier_table()) if lifetime_moved else member.tier_id
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE loyalty_member SET available_points = %s, pending_points = %s, lifetime_points = %s, "
            "batched_points = %s, tier_id = %s WHERE id = %s",
            [
                member.available_points,
                member.pending_points,
                member.lifetime_points,
                member.batched_points,
                tier_id,
                member.pk,
            ],
        )
    if tier_id != member.tier_id:
        TierChange.objects.create(
            member=member,
            from_tier_id=member.tier_id,
            to_tier_id=tier_id,
            lifetime_points=member.lifetime_points,
            entry=entry,
            reason=reason[:255],
        )
        member.tier_id = tier_id


class _AlreadyApplied(Exception):
    pass


def _insert(member: Member, *, actor, points: int, kind: str, status: str, reason: str, source: str, **extra):
    """Insert one entry and move the member's figures; the caller has validated and locked."""
    counts = extra.pop("counts_toward_lifetime", None)
    guard = extra.pop("guard", True)  # False: a clash on the key raises IntegrityError to the caller
    if counts is None:
        counts = rules.counts_toward_lifetime(kind)
    key = extra.get("idempotency_key")
    fields = dict(
        member=member,
        points=points,
        kind=kind,
        status=status,
        counts_toward_lifetime=counts,
        reason=reason[:500],
        source=source,
        **actor_fields(actor),
        **extra,
    )
    if kind == EntryKind.EXPIRATION and status == EntryStatus.ACTIVE:
        fields["spent_through"] = expiration_spent_through(member, points=points)
    if not key or not guard:  # nothing to collide on, or the caller handles a clash: no savepoint needed
        entry = LedgerEntry.objects.create(**fields)
    else:
        try:
            with transaction.atomic():
                entry = LedgerEntry.objects.create(**fields)
        except IntegrityError:
            if LedgerEntry.objects.filter(idempotency_key=key).exists():
                raise _AlreadyApplied(key) from None
            raise
    moved = _apply_to_balances(member, points=points, status=status, counts=counts)
    if status == EntryStatus.ACTIVE and points > 0:
        batch_open(member, entry_id=entry.pk, points=points, at=entry.created_at)
    _write_member(member, lifetime_moved=moved, entry=entry, reason=reason)
    return entry


def _record_shortfall(member, *, points, reason, entry=None, posted_entry=None, reversal_of=None, key=None):
    return Shortfall.objects.create(
        member=member,
        points=points,
        reason=reason[:500],
        entry=entry,
        posted_entry=posted_entry,
        reversal_of=reversal_of,
        idempotency_key=key,
    )


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise LoyaltyError("A reason is required.")
    return reason


def _check_staff(staff: StaffPolicy, points: int) -> None:
    """Refuse a change beyond the staff member's limits; else count it (written by staff.record at the end)."""
    if refusal := staff.refusal(points):
        raise LoyaltyError(refusal)
    staff.add(points)


# ---------------------------------------------------------------------------------------------------------------
# Staff and system actions


def points_adjust(
    *,
    member: Member | int,
    points: int,
    reason: str,
    actor,
    apply_type: str = RELATIVE,
    source: str = EntrySource.ADMIN,
    source_ref: int | None = None,
    idempotency_key: str | None = None,
    policy: str | None = None,
    counts_toward_lifetime: bool | None = None,
) -> PostResult:
    """Adjust a member's available points: relative (`points` added, signed) or "set to" exactly `points`.

    `counts_toward_lifetime`: whether the change moves lifetime and so the tier (None: an adjustment counts). A debit
    below zero follows the negative-balance policy (the program's, unless given). A staff actor needs the permission
    to adjust points, and a support agent stays within the program's limits. Raises LoyaltyError with the sentence
    a support agent reads.
    """
    reason = _require_reason(reason)
    if refusal := rules.points_refusal(points, apply_type):
        raise LoyaltyError(refusal)
    _check_policy(policy)
    member_id = member if isinstance(member, int) else member.pk
    with transaction.atomic():
        locked = lock_member(member_id)
        staff = staff_policy(actor, "adjust")
        key, applied = _live_and_applied(idempotency_key, locked)
        if applied:
            return applied
        decision = _decide(
            locked, points=points, apply_type=apply_type, status=EntryStatus.ACTIVE, policy=policy, what="debit"
        )
        if decision.nothing:
            return PostResult(member=locked)
        _check_staff(staff, decision.change)
        if decision.refusal:
            raise LoyaltyError(decision.refusal)
        entry = None
        try:
            if decision.posted:
                entry = _insert(
                    locked,
                    actor=actor,
                    points=decision.posted,
                    kind=EntryKind.ADJUSTMENT,
                    status=EntryStatus.ACTIVE,
                    reason=reason,
                    source=source,
                    source_ref=source_ref,
                    idempotency_key=key,
                    counts_toward_lifetime=rules.counts_toward_lifetime(
                        EntryKind.ADJUSTMENT, choice=counts_toward_lifetime
                    ),
                )
            if decision.shortfall:
                _record_shortfall(
                    locked, points=decision.shortfall, reason=reason, posted_entry=entry, key=None if entry else key
                )
        except _AlreadyApplied:
            return _applied(key, locked)
        staff.record()
        return PostResult(entry=entry, shortfall=decision.shortfall, member=locked)


def points_earn(
    *,
    member: Member | int,
    points: int,
    reason: str,
    actor,
    source: str,
    idempotency_key: str | None = None,
    source_ref: int | None = None,
    earn_rule=None,
    hold_until=None,
    savepoint: bool = True,
    key_is_new: bool = False,
    member_locked: bool = False,
) -> PostResult:
    """Credit earned points: pending until `hold_until` when it lies in the future, else active.

    A staff actor (crediting a conversion by hand) needs the permission to credit conversions and stays within the
    support-agent limits. Two knobs save round trips for a caller that applies many facts in one transaction (the
    webhook drain): `savepoint=False` joins the caller's transaction (or savepoint) instead of opening one, and
    `key_is_new=True` skips the look-up of the idempotency key when the caller knows it cannot be on the ledger yet
    (the key names a row created in this transaction). With both, the unique index still refuses a second entry for
    the key: the IntegrityError then goes to the caller, who rolls back its own savepoint and runs the fact again.
    `member_locked=True`: `member` is a Member the caller locked (SELECT ... FOR UPDATE, or created) earlier in this
    transaction and holds as fresh as its row, so it is not locked and read a second time.
    """
    if not isinstance(points, int) or isinstance(points, bool) or not 0 < points <= rules.MAX_ACTION_POINTS:
        raise LoyaltyError(f"Earned points must be a whole number from 1 to {rules.MAX_ACTION_POINTS:,}.")
    reason = _require_reason(reason)
    status = EntryStatus.PENDING if hold_until and hold_until > timezone.now() else EntryStatus.ACTIVE
    member_id = member if isinstance(member, int) else member.pk
    with transaction.atomic(savepoint=savepoint):
        locked = member if member_locked and isinstance(member, Member) else lock_member(member_id)
        staff = staff_policy(actor, "credit")
        key, applied = (idempotency_key, None) if key_is_new else _live_and_applied(idempotency_key, locked)
        if applied:
            return applied
        _check_staff(staff, points)
        try:
            entry = _insert(
                locked,
                actor=actor,
                points=points,
                kind=EntryKind.EARN,
                status=status,
                reason=reason,
                source=source,
                source_ref=source_ref,
                idempotency_key=key,
                earn_rule=earn_rule,
                hold_until=hold_until if status == EntryStatus.PENDING else None,
                guard=savepoint or not key_is_new,
            )
        except _AlreadyApplied:
            return _applied(key, locked)
        staff.record()
        return PostResult(entry=entry, member=locked)


def _coupon_code(prefix: str) -> str:
    body = "".join(secrets.choice(COUPON_ALPHABET) for _ in range(10))
    return f"{prefix}-{body}" if prefix else body


def reward_give(
    *,
    member: Member | int,
    reward: Reward,
    deduct_points: bool,
    actor,
    reason: str = "",
    idempotency_key: str | None = None,
) -> Coupon:
    """Give a member a coupon for a reward, deducting its cost (a redemption) or for free. Never touches lifetime.

    Raises LoyaltyError when the reward is inactive, the points are short, or the staff member may not give it.
    """
    member_id = member if isinstance(member, int) else member.pk
    with transaction.atomic():
        locked = lock_member(member_id)
        staff = staff_policy(actor, "reward")
        if idempotency_key and (coupon := Coupon.objects.filter(idempotency_key=idempotency_key).first()):
            return coupon
        if not reward.active:
            raise LoyaltyError(f"{reward.name} is not an active reward.")
        cost = reward.points_cost if deduct_points else 0
        if refusal := rules.reward_refusal(reward.name, cost, locked.email, locked.available_points):
            raise LoyaltyError(refusal)
        _check_staff(staff, cost)
        reason = (reason or "").strip() or f"Reward: {reward.name}"
        entry = None
        if cost:
            entry = _insert(
                locked,
                actor=actor,
                points=-cost,
                kind=EntryKind.REDEMPTION,
                status=EntryStatus.ACTIVE,
                reason=reason,
                source=EntrySource.ADMIN,
            )
        coupon = _create_coupon(locked, reward=reward, entry=entry, cost=cost, actor=actor, key=idempotency_key)
        staff.record()
        return coupon


def _create_coupon(member, *, reward, entry, cost, actor, key) -> Coupon:
    for _attempt in range(5):
        try:
            with transaction.atomic():
                return Coupon.objects.create(
                    code=_coupon_code(reward.coupon_prefix),
                    member=member,
                    reward=reward,
                    redemption_entry=entry,
                    points_spent=cost,
                    created_by=None if isinstance(actor, SystemActor) else actor,
                    idempotency_key=key,
                )
        except IntegrityError:
            if key and Coupon.objects.filter(idempotency_key=key).exists():
                raise LoyaltyError("This reward was already given (the same request arrived twice).") from None
    raise LoyaltyError("Could not make a unique coupon code; try again.")


def _lock_entry(entry: LedgerEntry | int) -> tuple[Member, LedgerEntry]:
    """Lock the entry's member, then read the entry fresh (its status may have moved since the page loaded)."""
    entry_id = entry if isinstance(entry, int) else entry.pk
    member_id = LedgerEntry.objects.filter(pk=entry_id).values_list("member_id", flat=True).first()
    if member_id is None:
        raise LoyaltyError(f"Entry #{entry_id} does not exist.")
    member = lock_member(member_id)
    return member, LedgerEntry.objects.select_for_update().get(pk=entry_id)


def _move_status(member: Member, entry: LedgerEntry, *, to: str, actor, reason: str) -> None:
    """The one permitted change of an entry: pending -> active or rejected."""
    now = timezone.now()
    LedgerEntry.objects.filter(pk=entry.pk, status=EntryStatus.PENDING).update(
        status=to,
        status_changed_at=now,
        status_changed_by_id=None if isinstance(actor, SystemActor) else actor.pk,
    )
    entry.status = to
    _apply_to_balances(member, points=entry.points, status=EntryStatus.PENDING, counts=False, sign=-1)
    if to == EntryStatus.ACTIVE and entry.points > 0:  # pending points start their expiry clock now
        batch_open(member, entry_id=entry.pk, points=entry.points, at=now)
    moved = to == EntryStatus.ACTIVE and _apply_to_balances(
        member, points=entry.points, status=to, counts=entry.counts_toward_lifetime
    )
    _write_member(member, lifetime_moved=moved, entry=entry, reason=reason)


def _locked_pending(entry, actor) -> tuple[Member, LedgerEntry, StaffPolicy]:
    member, entry = _lock_entry(entry)
    staff = staff_policy(actor, "approve")
    if refusal := rules.not_pending_refusal(entry_id=entry.pk, status=entry.status):
        raise LoyaltyError(refusal)
    _check_staff(staff, entry.points)
    return member, entry, staff


def entry_approve(*, entry: LedgerEntry | int, actor, reason: str = "") -> LedgerEntry:
    """Make a pending entry active now: its points become available (and count toward lifetime)."""
    with transaction.atomic():
        member, entry, staff = _locked_pending(entry, actor)
        _move_status(member, entry, to=EntryStatus.ACTIVE, actor=actor, reason=reason or "Pending points approved")
        staff.record()
        return entry


def entry_reject(*, entry: LedgerEntry | int, actor, reason: str) -> LedgerEntry:
    """Reject a pending entry: its points never become available."""
    reason = _require_reason(reason)
    with transaction.atomic():
        member, entry, staff = _locked_pending(entry, actor)
        _reject_with_take_backs(member, entry, actor=actor, reason=reason)
        staff.record()
        return entry


def _reject_with_take_backs(member, entry, *, actor, reason):
    # A pending earning's pending take-backs (partial refunds during the hold) go with it.
    for take_back in entry.taken_back_by.select_for_update().filter(status=EntryStatus.PENDING).order_by("pk"):
        _move_status(member, take_back, to=EntryStatus.REJECTED, actor=actor, reason=reason)
    _move_status(member, entry, to=EntryStatus.REJECTED, actor=actor, reason=reason)


def entry_is_reversed(entry: LedgerEntry) -> bool:
    return LedgerEntry.objects.filter(reverses=entry).exists() or Shortfall.objects.filter(reversal_of=entry).exists()


def _taken_back(entry: LedgerEntry) -> int:
    """How much of an earning partial take-backs already took (a positive number), counting pending ones."""
    total = sum(entry.taken_back_by.exclude(status=EntryStatus.REJECTED).values_list("points", flat=True), start=0)
    return -total


def _reversal_refusal(entry: LedgerEntry, remaining: int) -> str | None:
    reversal = LedgerEntry.objects.filter(reverses=entry).values_list("pk", flat=True).first()
    return rules.reversal_refusal(
        entry_id=entry.pk,
        kind=entry.kind,
        status=entry.status,
        reversed_by=reversal,
        reversed_without_entry=Shortfall.objects.filter(reversal_of=entry).exists(),
        remaining=remaining,
    )


def _bounded(decision: rules.Decision, entry: LedgerEntry, taken: int, recorded: int) -> rules.Decision:
    """The decision with its shortfall held to what an earning still owes (rules.shortfall_owed)."""
    if entry.points <= 0 or not decision.shortfall:
        return decision
    short = rules.shortfall_owed(
        earned=entry.points, taken_back=taken - decision.posted, recorded_so_far=recorded, want=decision.shortfall
    )
    return dataclasses.replace(decision, shortfall=short)


def _not_recovered(entry: LedgerEntry) -> int:
    """What an earning no longer owes besides its take-backs: the shortfalls recorded against it (points not taken
    back because they were spent) and the points of it that expired (gone already; never taken a second time)."""
    short = sum(Shortfall.objects.filter(entry=entry).values_list("points", flat=True), start=0)
    return short + batch_expired(entry.pk)


def entry_reverse(
    *,
    entry: LedgerEntry | int,
    reason: str,
    actor,
    policy: str | None = None,
    source: str = EntrySource.ADMIN,
    source_ref: int | None = None,
    idempotency_key: str | None = None,
) -> PostResult:
    """Undo one credited entry: a pending one is rejected; an active one gets a reversal entry linked one-to-one.

    Where the points were already spent, the negative-balance policy decides (forbid refuses with the numbers).
    Reversing a redemption disables its coupon in the same transaction. A staff actor needs the permission to
    reverse, and a support agent stays within the limits. Raises LoyaltyError with the reason it cannot be reversed.
    """
    reason = _require_reason(reason)
    _check_policy(policy)
    with transaction.atomic():
        member, entry = _lock_entry(entry)
        staff = staff_policy(actor, "reverse")
        key, applied = _live_and_applied(idempotency_key, member)
        if applied:
            return applied
        taken, recorded = (_taken_back(entry), _not_recovered(entry)) if entry.points > 0 else (0, 0)
        remaining = rules.reversal_remaining(points=entry.points, taken_back=taken, not_recovered=recorded)
        if refusal := _reversal_refusal(entry, remaining):
            raise LoyaltyError(refusal)
        if entry.status == EntryStatus.PENDING:  # rejected, with its pending take-backs: its points never come
            _check_staff(staff, entry.points)
            _reject_with_take_backs(member, entry, actor=actor, reason=reason)
            staff.record()
            return PostResult(entry=entry, member=member)
        _check_staff(staff, remaining)
        decision = _decide(
            member, points=-remaining, apply_type=RELATIVE, status=EntryStatus.ACTIVE, policy=policy, what="reverse"
        )
        if decision.refusal:
            raise LoyaltyError(decision.refusal)
        decision = _bounded(decision, entry, taken, recorded)
        reversal = None
        if decision.posted:
            reversal = _insert(
                member,
                actor=actor,
                points=decision.posted,
                kind=EntryKind.REVERSAL,
                status=EntryStatus.ACTIVE,
                reason=reason,
                source=source,
                source_ref=source_ref,
                counts_toward_lifetime=rules.counts_toward_lifetime(
                    EntryKind.REVERSAL, reversed_counts=entry.counts_toward_lifetime
                ),
                reverses=entry,
                idempotency_key=key,
            )
        if decision.shortfall:
            _record_shortfall(
                member,
                points=decision.shortfall,
                reason=reason,
                entry=entry,
                posted_entry=reversal,
                reversal_of=None if reversal else entry,
                key=None if reversal else key,
            )
        if entry.kind == EntryKind.REDEMPTION:
            Coupon.objects.filter(redemption_entry=entry, disabled=False).update(
                disabled=True, disabled_at=timezone.now()
            )
        staff.record()
        return PostResult(entry=reversal, shortfall=decision.shortfall, member=member)


def entry_take_back(
    *,
    entry: LedgerEntry | int,
    points: int,
    reason: str,
    actor,
    idempotency_key: str,
    policy: str | None = None,
    source: str = EntrySource.ORDER,
    source_ref: int | None = None,
) -> PostResult:
    """Take back a share of an earning (a partial refund): never more than what is left of it.

    A pending earning gets a pending take-back with the same hold, so both become active (or rejected) together.
    """
    reason = _require_reason(reason)
    _check_policy(policy)
    with transaction.atomic():
        member, entry = _lock_entry(entry)
        staff = staff_policy(actor, "reverse")
        key, applied = _live_and_applied(idempotency_key, member)
        if applied:
            return applied
        if entry.kind != EntryKind.EARN or entry.points <= 0:
            raise LoyaltyError(f"Entry #{entry.pk} is not an earning; only earnings are taken back in part.")
        if entry.status == EntryStatus.REJECTED or entry_is_reversed(entry):
            return PostResult(member=member)
        taken, recorded = _taken_back(entry), _not_recovered(entry)
        want = rules.take_back_points(want=points, earned=entry.points, taken_back=taken, not_recovered=recorded)
        if want <= 0:
            return PostResult(member=member)
        _check_staff(staff, want)
        decision = _decide(
            member, points=-want, apply_type=RELATIVE, status=entry.status, policy=policy, what="take_back"
        )
        if decision.refusal:
            raise LoyaltyError(decision.refusal)
        decision = _bounded(decision, entry, taken, recorded)
        take_back = None
        if decision.posted:
            take_back = _insert(
                member,
                actor=actor,
                points=decision.posted,
                kind=EntryKind.REVERSAL,
                status=entry.status,
                reason=reason,
                source=source,
                source_ref=source_ref,
                counts_toward_lifetime=rules.counts_toward_lifetime(
                    EntryKind.REVERSAL, reversed_counts=entry.counts_toward_lifetime
                ),
                takes_back=entry,
                hold_until=entry.hold_until if entry.status == EntryStatus.PENDING else None,
                idempotency_key=key,
            )
        if decision.shortfall:
            _record_shortfall(
                member,
                points=decision.shortfall,
                reason=reason,
                entry=entry,
                posted_entry=take_back,
                key=None if take_back else key,
            )
        staff.record()
        return PostResult(entry=take_back, shortfall=decision.shortfall, member=member)
