"""The ledger service: the only code that writes ledger entries or a member's cached balances.

Every write locks the member's row first (SELECT ... FOR UPDATE; on SQLite the IMMEDIATE transaction holds the
database's write lock), reads the balance it is about to change, posts, updates the cached figures and recomputes the
tier in the same transaction. Facts from outside carry an idempotency key: posting one twice reports "already applied".
"""

import secrets
from bisect import bisect_right
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from tiers.models import Tier, TierChange
from tiers.sql import tier_for_lifetime_sql

from ..actors import SystemActor, actor_fields
from ..errors import LoyaltyError
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
from .ledger_pg import adjust_in_one_statement

RELATIVE = "relative"
SET_TO = "set"
APPLY_TYPES = (RELATIVE, SET_TO)
COUPON_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
UNLIMITED_ADJUST_PERMISSION = "loyalty.adjust_points_unlimited"
MAX_ACTION_POINTS = 10_000_000  # the most one staff action (one member, or each member of a group) may move


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


# ---------------------------------------------------------------------------------------------------------------
# Shared rules (the bulk path applies the very same functions)


def counts_toward_lifetime(kind: str) -> bool:
    """Earnings and adjustments count toward lifetime; redemptions and expirations do not."""
    return kind in (EntryKind.EARN, EntryKind.ADJUSTMENT)


def tier_table() -> list[tuple[int, int]]:
    """The tiers as (threshold, id), lowest first."""
    return list(Tier.objects.order_by("threshold").values_list("threshold", "id"))


def tier_for(lifetime: int, table: list[tuple[int, int]]) -> int | None:
    """The id of the highest tier whose threshold the lifetime points reach (None below the lowest)."""
    i = bisect_right([t for t, _ in table], lifetime)
    return table[i - 1][1] if i else None


def resolve_debit(*, available: int, points: int, policy: str) -> tuple[int, int]:
    """Apply the negative-balance policy to a change of `points` against `available`.

    Returns (points to post, shortfall). Raises nothing: the caller words the refusal for "forbid".
    """
    if points >= 0 or available + points >= 0 or policy == NegativeBalancePolicy.ALLOW:
        return points, 0
    if policy == NegativeBalancePolicy.FORBID:
        return 0, -points
    take = max(available, 0)
    return -take, -points - take


def earning_owed(*, earned: int, taken_back: int, not_recovered: int) -> int:
    """What an earning still owes: the points earned, less what was taken back and what was recorded as not
    recovered (a shortfall settles its part for good, so no later take-back asks for it again). Never below 0."""
    return max(earned - taken_back - not_recovered, 0)


def shortfall_owed(*, earned: int, taken_back: int, recorded_so_far: int, want: int) -> int:
    """The shortfall to record for one earning when `want` points could not be taken back.

    What is recorded as not recovered for an earning never exceeds what it still owes: earned less taken back so far
    (this take-back included) less shortfalls already recorded against it (DOMAIN: "The shortfall of one earning
    never exceeds what it still owes"; issue 12). Never below 0.
    """
    return max(min(want, earned - taken_back - recorded_so_far), 0)


def resolve_set_to(*, available: int, target: int) -> int:
    """The difference "set to N" posts: bringing available to exactly N."""
    return target - available


def policy_or_default(policy: str | None) -> str:
    if policy is None:
        return ProgramSettings.load().negative_balance_policy
    if policy not in NegativeBalancePolicy.values:
        raise ValueError(f"unknown negative-balance policy {policy!r}")
    return policy


def _check_policy(policy: str | None) -> None:
    if policy is not None and policy not in NegativeBalancePolicy.values:
        raise ValueError(f"unknown negative-balance policy {policy!r}")


def _debit(*, available: int, points: int, policy: str | None) -> tuple[str | None, int, int]:
    """resolve_debit, reading the program's policy only when the debit goes beyond what is available (most posts
    never need it, and a single post should not pay a query for it). Returns (policy used, points, shortfall)."""
    if points >= 0 or available + points >= 0:
        return policy, points, 0
    policy = policy_or_default(policy)
    return (policy, *resolve_debit(available=available, points=points, policy=policy))


# ---------------------------------------------------------------------------------------------------------------
# Building blocks (callers hold the member's lock)


def lock_member(member_id: int) -> Member:
    """Lock the member's row for the rest of the transaction and return it fresh."""
    try:
        return Member.objects.select_for_update().get(pk=member_id)
    except Member.DoesNotExist:
        raise LoyaltyError(f"Member #{member_id} does not exist.") from None


def _existing(key: str | None) -> LedgerEntry | None:
    """The entry already posted for this outside fact, if any."""
    if not key:
        return None
    return LedgerEntry.objects.filter(idempotency_key=key).first()


def _applied(key: str | None, member: Member) -> PostResult | None:
    """An "already applied" result when the key was posted before (as an entry, or a shortfall that took nothing)."""
    if not key:
        return None
    if entry := _existing(key):
        return PostResult(entry=entry, already_applied=True, member=member)
    if Shortfall.objects.filter(idempotency_key=key).exists():
        return PostResult(already_applied=True, member=member)
    return None


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
    """Write the member's new figures; where lifetime moved, the tier is found in the same UPDATE and a move recorded.

    One statement instead of read-tiers-then-save keeps a single post at few round trips.
    """
    figures = [member.available_points, member.pending_points, member.lifetime_points]
    with connection.cursor() as cursor:
        if not lifetime_moved:
            cursor.execute(
                "UPDATE loyalty_member SET available_points = %s, pending_points = %s, lifetime_points = %s "
                "WHERE id = %s",
                [*figures, member.pk],
            )
            return
        cursor.execute(
            "UPDATE loyalty_member SET available_points = %s, pending_points = %s, lifetime_points = %s, "
            f"tier_id = {tier_for_lifetime_sql('%s')} "
            "WHERE id = %s RETURNING tier_id",
            [*figures, member.lifetime_points, member.pk],
        )
        new_tier_id = cursor.fetchone()[0]
    if new_tier_id != member.tier_id:
        TierChange.objects.create(
            member=member,
            from_tier_id=member.tier_id,
            to_tier_id=new_tier_id,
            lifetime_points=member.lifetime_points,
            entry=entry,
            reason=reason[:255],
        )
        member.tier_id = new_tier_id


def _insert(
    member: Member,
    *,
    actor,
    points: int,
    kind: str,
    status: str,
    reason: str,
    source: str,
    **extra,
):
    """Insert one entry and move the member's figures; the caller has validated and locked."""
    counts = extra.pop("counts_toward_lifetime", None)
    guard = extra.pop("guard", True)  # False: a clash on the key raises IntegrityError to the caller
    if counts is None:
        counts = counts_toward_lifetime(kind)
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
    _write_member(member, lifetime_moved=moved, entry=entry, reason=reason)
    return entry


class _AlreadyApplied(Exception):
    pass


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


def _agent_limit(actor) -> int | None:
    """The most points this actor may move in one action: the program's limit for support agents, None otherwise."""
    if isinstance(actor, SystemActor) or actor.has_perm(UNLIMITED_ADJUST_PERMISSION):
        return None
    return ProgramSettings.load().support_agent_limit


def _check_agent_limit(points: int, limit: int | None) -> None:
    """Support agents may move at most the program's per-action limit; program managers have no limit."""
    if limit is not None and abs(points) > limit:
        raise LoyaltyError(
            f"Adjustments above {limit:,} points need a program manager: this one is {abs(points):,} points."
        )


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
) -> PostResult:
    """Adjust a member's available (and lifetime) points: relative (add or subtract) or "set to" exactly N.

    A debit below zero follows the negative-balance policy (the program's, unless given).
    """
    reason = _require_reason(reason)
    if apply_type not in APPLY_TYPES:
        raise LoyaltyError(f"Unknown apply type {apply_type!r}: use relative or set.")
    if not isinstance(points, int) or isinstance(points, bool):
        raise LoyaltyError("Points must be a whole number.")
    if apply_type == RELATIVE and points == 0:
        raise LoyaltyError("Points must not be 0.")
    if apply_type == SET_TO and points < 0:
        raise LoyaltyError("Set to needs a balance of 0 or more.")
    _check_policy(policy)
    member_id = member if isinstance(member, int) else member.pk
    limit = _agent_limit(actor)
    # Over an agent's limit the general path answers, so a repeated key still reads "already applied" first.
    if apply_type == RELATIVE and (limit is None or abs(points) <= limit):
        posted = adjust_in_one_statement(
            member_id=member_id,
            points=points,
            reason=reason,
            who=actor_fields(actor),
            source=source,
            source_ref=source_ref,
            key=idempotency_key,
        )
        if posted:
            return PostResult(entry=posted[0], member=posted[1])
    with transaction.atomic():
        locked = lock_member(member_id)
        if applied := _applied(idempotency_key, locked):
            return applied
        change = points
        if apply_type == SET_TO:
            change = resolve_set_to(available=locked.available_points, target=points)
            if change == 0:
                return PostResult(member=locked)
        _check_agent_limit(change, limit)
        policy, posted, short = _debit(available=locked.available_points, points=change, policy=policy)
        if policy == NegativeBalancePolicy.FORBID and short:
            raise LoyaltyError(
                f"Cannot take {-change:,} points from {locked.email}: only {locked.available_points:,} are available."
            )
        entry = None
        try:
            if posted:
                entry = _insert(
                    locked,
                    actor=actor,
                    points=posted,
                    kind=EntryKind.ADJUSTMENT,
                    status=EntryStatus.ACTIVE,
                    reason=reason,
                    source=source,
                    source_ref=source_ref,
                    idempotency_key=idempotency_key,
                )
            if short:
                _record_shortfall(
                    locked,
                    points=short,
                    reason=reason,
                    posted_entry=entry,
                    key=None if entry else idempotency_key,
                )
        except _AlreadyApplied:
            return _applied(idempotency_key, locked)
        return PostResult(entry=entry, shortfall=short, member=locked)


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

    Two knobs save round trips for a caller that applies many facts in one transaction (the webhook drain):
    `savepoint=False` joins the caller's transaction (or savepoint) instead of opening one, and `key_is_new=True`
    skips the look-up of the idempotency key when the caller knows it cannot be on the ledger yet (the key names a
    row created in this transaction). With both, the unique index still refuses a second entry for the key: the
    IntegrityError then goes to the caller, who rolls back its own savepoint and runs the fact again.
    `member_locked=True`: `member` is a Member the caller locked (SELECT ... FOR UPDATE, or created) earlier in this
    transaction and holds as fresh as its row, so it is not locked and read a second time.
    """
    if not isinstance(points, int) or points <= 0:
        raise LoyaltyError("Earned points must be a whole number above 0.")
    reason = _require_reason(reason)
    status = EntryStatus.PENDING if hold_until and hold_until > timezone.now() else EntryStatus.ACTIVE
    member_id = member if isinstance(member, int) else member.pk
    with transaction.atomic(savepoint=savepoint):
        locked = member if member_locked and isinstance(member, Member) else lock_member(member_id)
        if not key_is_new and (applied := _applied(idempotency_key, locked)):
            return applied
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
                idempotency_key=idempotency_key,
                earn_rule=earn_rule,
                hold_until=hold_until if status == EntryStatus.PENDING else None,
                guard=savepoint or not key_is_new,
            )
        except _AlreadyApplied:
            return _applied(idempotency_key, locked)
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
    """Give a member a coupon for a reward, deducting its cost (a redemption) or for free. Never touches lifetime."""
    member_id = member if isinstance(member, int) else member.pk
    with transaction.atomic():
        locked = lock_member(member_id)
        if idempotency_key and (coupon := Coupon.objects.filter(idempotency_key=idempotency_key).first()):
            return coupon
        if not reward.active:
            raise LoyaltyError(f"{reward.name} is not an active reward.")
        cost = reward.points_cost if deduct_points else 0
        if cost > locked.available_points:
            raise LoyaltyError(
                f"Cannot give {reward.name} for {cost:,} points: {locked.email} has only "
                f"{locked.available_points:,} available."
            )
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
        return _create_coupon(
            locked,
            reward=reward,
            entry=entry,
            cost=cost,
            actor=actor,
            key=idempotency_key,
        )


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
    LedgerEntry.objects.filter(pk=entry.pk, status=EntryStatus.PENDING).update(
        status=to,
        status_changed_at=timezone.now(),
        status_changed_by_id=None if isinstance(actor, SystemActor) else actor.pk,
    )
    entry.status = to
    _apply_to_balances(member, points=entry.points, status=EntryStatus.PENDING, counts=False, sign=-1)
    moved = to == EntryStatus.ACTIVE and _apply_to_balances(
        member, points=entry.points, status=to, counts=entry.counts_toward_lifetime
    )
    _write_member(member, lifetime_moved=moved, entry=entry, reason=reason)


def entry_approve(*, entry: LedgerEntry | int, actor, reason: str = "") -> LedgerEntry:
    """Make a pending entry active now: its points become available (and count toward lifetime)."""
    with transaction.atomic():
        member, entry = _lock_entry(entry)
        if entry.status != EntryStatus.PENDING:
            raise LoyaltyError(f"Entry #{entry.pk} is {entry.get_status_display().lower()}, not pending.")
        _move_status(
            member,
            entry,
            to=EntryStatus.ACTIVE,
            actor=actor,
            reason=reason or "Pending points approved",
        )
        return entry


def entry_reject(*, entry: LedgerEntry | int, actor, reason: str) -> LedgerEntry:
    """Reject a pending entry: its points never become available."""
    reason = _require_reason(reason)
    with transaction.atomic():
        member, entry = _lock_entry(entry)
        if entry.status != EntryStatus.PENDING:
            raise LoyaltyError(f"Entry #{entry.pk} is {entry.get_status_display().lower()}, not pending.")
        _reject_with_take_backs(member, entry, actor=actor, reason=reason)
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
    total = sum(
        entry.taken_back_by.exclude(status=EntryStatus.REJECTED).values_list("points", flat=True),
        start=0,
    )
    return -total


def _not_recovered(entry: LedgerEntry) -> int:
    """The shortfalls already recorded against an earning (points not taken back because they were spent)."""
    return sum(Shortfall.objects.filter(entry=entry).values_list("points", flat=True), start=0)


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
    """
    reason = _require_reason(reason)
    _check_policy(policy)
    with transaction.atomic():
        member, entry = _lock_entry(entry)
        if applied := _applied(idempotency_key, member):
            return applied
        _check_reversible(entry)
        if entry.status == EntryStatus.PENDING:
            _reject_with_take_backs(member, entry, actor=actor, reason=reason)
            return PostResult(entry=entry, member=member)
        taken = recorded = 0
        remaining = entry.points
        if entry.points > 0:
            taken, recorded = _taken_back(entry), _not_recovered(entry)
            remaining = earning_owed(earned=entry.points, taken_back=taken, not_recovered=recorded)
        if remaining == 0:
            raise LoyaltyError(
                f"Entry #{entry.pk} was already taken back in full by partial reverts (or recorded as a shortfall)."
            )
        policy, posted, short = _debit(available=member.available_points, points=-remaining, policy=policy)
        if policy == NegativeBalancePolicy.FORBID and short:
            raise LoyaltyError(
                f"Cannot reverse: {remaining:,} points were credited "
                f"but only {member.available_points:,} are available."
            )
        if entry.points > 0:
            short = shortfall_owed(earned=entry.points, taken_back=taken - posted, recorded_so_far=recorded, want=short)
        reversal = None
        if posted:
            reversal = _insert(
                member,
                actor=actor,
                points=posted,
                kind=EntryKind.REVERSAL,
                status=EntryStatus.ACTIVE,
                reason=reason,
                source=source,
                source_ref=source_ref,
                counts_toward_lifetime=entry.counts_toward_lifetime,
                reverses=entry,
                idempotency_key=idempotency_key,
            )
        if short:
            _record_shortfall(
                member,
                points=short,
                reason=reason,
                entry=entry,
                posted_entry=reversal,
                reversal_of=None if reversal else entry,
                key=None if reversal else idempotency_key,
            )
        return PostResult(entry=reversal, shortfall=short, member=member)


def _check_reversible(entry: LedgerEntry) -> None:
    if entry.kind == EntryKind.REVERSAL:
        raise LoyaltyError(f"Entry #{entry.pk} is itself a reversal; adjust the points instead.")
    if entry.status == EntryStatus.REJECTED:
        raise LoyaltyError(f"Entry #{entry.pk} was rejected: there is nothing to reverse.")
    if reversal := LedgerEntry.objects.filter(reverses=entry).first():
        raise LoyaltyError(f"Entry #{entry.pk} was already reversed by entry #{reversal.pk}.")
    if Shortfall.objects.filter(reversal_of=entry).exists():
        raise LoyaltyError(f"Entry #{entry.pk} was already reversed (nothing could be taken; see its shortfall).")


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
        if applied := _applied(idempotency_key, member):
            return applied
        if entry.kind != EntryKind.EARN or entry.points <= 0:
            raise LoyaltyError(f"Entry #{entry.pk} is not an earning; only earnings are taken back in part.")
        if entry.status == EntryStatus.REJECTED or entry_is_reversed(entry):
            return PostResult(member=member)
        taken, recorded = _taken_back(entry), _not_recovered(entry)
        want = min(points, earning_owed(earned=entry.points, taken_back=taken, not_recovered=recorded))
        if want <= 0:
            return PostResult(member=member)
        if entry.status == EntryStatus.PENDING:
            posted, short = -want, 0
        else:
            policy, posted, short = _debit(available=member.available_points, points=-want, policy=policy)
            if policy == NegativeBalancePolicy.FORBID and short:
                raise LoyaltyError(f"Cannot take back {want:,} points: only {member.available_points:,} are available.")
        short = shortfall_owed(earned=entry.points, taken_back=taken - posted, recorded_so_far=recorded, want=short)
        take_back = None
        if posted:
            take_back = _insert(
                member,
                actor=actor,
                points=posted,
                kind=EntryKind.REVERSAL,
                status=entry.status,
                reason=reason,
                source=source,
                source_ref=source_ref,
                counts_toward_lifetime=entry.counts_toward_lifetime,
                takes_back=entry,
                hold_until=entry.hold_until if entry.status == EntryStatus.PENDING else None,
                idempotency_key=idempotency_key,
            )
        if short:
            _record_shortfall(
                member,
                points=short,
                reason=reason,
                entry=entry,
                posted_entry=take_back,
                key=None if take_back else idempotency_key,
            )
        return PostResult(entry=take_back, shortfall=short, member=member)
