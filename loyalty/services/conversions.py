"""Conversions credited by staff: "Add conversion / points" and rewarding "New conversions".

Built on the ledger service (points_earn): nothing here writes an entry or a balance itself. The keys are shared with
the other paths that credit the same facts (the tokens CSV, Reward past actions), so a fact is credited once whichever
path gets there first.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ..errors import LoyaltyError
from ..keys import order_earning_key, signup_earning_key
from ..models import (
    EarnRule,
    EarnRuleKind,
    EntryKind,
    EntrySource,
    LedgerEntry,
    Member,
    Order,
    ProgramSettings,
    RewardToken,
    TokenStatus,
)
from ..timezones import day_start, store_today
from .ledger import PostResult, points_earn
from .orders import order_refunds_settle, order_rule_points
from .tokens import token_close, token_key

NEW_CONVERSIONS_DAYS = 30


def signup_key(rule: EarnRule, member_id: int) -> str:
    return signup_earning_key(member_id, rule.pk)


def order_key(rule: EarnRule, order_id: int) -> str:
    return order_earning_key(order_id, rule.pk)


def active_rule(kind: str) -> EarnRule | None:
    return EarnRule.objects.filter(kind=kind, active=True).order_by("pk").first()


def hold_until_for(rule: EarnRule | None):
    """When points earned now under this rule stop being pending (None: active at once)."""
    days = rule.hold_days if rule and rule.hold_days is not None else ProgramSettings.load().hold_days_default
    return timezone.now() + timedelta(days=days) if days else None


def conversion_credit(
    *,
    actor,
    reason: str,
    token: str = "",
    email: str = "",
    points: int | None = None,
    idempotency_key: str | None = None,
) -> PostResult:
    """Credit a conversion by reward token (once per token) or by member's email (keyed by the caller's key)."""
    if token:
        closed = token_close(token=token, actor=actor)
        if closed.post is None:
            return PostResult(already_applied=closed.already_applied, member=closed.token.member)
        return closed.post
    member = Member.objects.filter(email=email.strip().lower()).first()
    if member is None:
        raise LoyaltyError(f"No member has the email {email}.")
    rule = active_rule(EarnRuleKind.CONVERSION)
    points = points or (rule.points if rule else 0)
    if not points:
        raise LoyaltyError("Give the points: there is no active conversion rule with fixed points.")
    return points_earn(
        member=member,
        points=points,
        reason=reason,
        actor=actor,
        source=EntrySource.ADMIN,
        idempotency_key=idempotency_key,
        earn_rule=rule,
        hold_until=hold_until_for(rule),
    )


def _credit_token(*, token: str, actor, reason: str, points: int | None) -> PostResult:
    found = RewardToken.objects.select_related("earn_rule").filter(token=token).first()
    if found is None:
        raise LoyaltyError(f"No reward token {token}.")
    if found.status == TokenStatus.REJECTED:
        raise LoyaltyError(f"Reward token {token} was rejected; it cannot be credited.")
    rule = found.earn_rule or active_rule(EarnRuleKind.CONVERSION)
    points = points or (rule.points if rule else 0)
    if not points:
        raise LoyaltyError("Give the points: the token's conversion rule has no fixed points.")
    with transaction.atomic():
        result = points_earn(
            member=found.member_id,
            points=points,
            reason=reason,
            actor=actor,
            source=EntrySource.ADMIN,
            idempotency_key=token_key(token),
            earn_rule=rule,
            hold_until=hold_until_for(rule),
        )
        if found.status != TokenStatus.CLOSED:
            RewardToken.objects.filter(pk=found.pk).update(status=TokenStatus.CLOSED, closed_at=timezone.now())
    return result


# ---------------------------------------------------------------------------------------------------------------
# New conversions: the last 30 days' orders, closed tokens and sign-ups that earned nothing yet


@dataclass
class NewConversions:
    orders: list = field(default_factory=list)
    tokens: list = field(default_factory=list)
    signups: list = field(default_factory=list)


def _since():
    """The start of the store's day 30 days ago: "the last 30 days" are the store's days (loyalty.timezones)."""
    return day_start(store_today() - timedelta(days=NEW_CONVERSIONS_DAYS))


def new_conversions(limit: int = 200) -> NewConversions:
    """What converted in the last 30 days and was not rewarded yet (at most `limit` of each kind, newest first)."""
    since = _since()
    earned = LedgerEntry.objects.filter(kind=EntryKind.EARN)
    order_rule = active_rule(EarnRuleKind.ORDER)
    order_keys = Q(source=EntrySource.ORDER, source_ref=OuterRef("pk"))
    orders = (
        Order.objects.filter(placed_at__gte=since, member__isnull=False, cancelled=False, test=False)
        .annotate(rewarded=Exists(earned.filter(order_keys)))
        .filter(rewarded=False)
        .select_related("member")
        .order_by("-placed_at")
    )
    if order_rule:
        orders = [o for o in orders[: limit * 2] if not _key_used(order_key(order_rule, o.pk))][:limit]
    tokens = (
        RewardToken.objects.filter(status=TokenStatus.CLOSED, closed_at__gte=since)
        .exclude(Exists(LedgerEntry.objects.filter(idempotency_key=token_key_expr())))
        .select_related("member")
        .order_by("-closed_at")[:limit]
    )
    signup_rule = active_rule(EarnRuleKind.SIGNUP)
    signups = (
        Member.objects.filter(signed_up_at__gte=since)
        .exclude(Exists(earned.filter(member=OuterRef("pk"), earn_rule__kind=EarnRuleKind.SIGNUP)))
        .order_by("-signed_up_at")[:limit]
    )
    return NewConversions(orders=list(orders), tokens=list(tokens), signups=list(signups) if signup_rule else [])


def token_key_expr():
    from django.db.models import Value
    from django.db.models.functions import Concat

    return Concat(Value("token:"), OuterRef("token"))


def _key_used(key: str) -> bool:
    return LedgerEntry.objects.filter(idempotency_key=key).exists()


@dataclass
class RewardedConversions:
    credited: int = 0
    points: int = 0
    already: int = 0
    refused: list[str] = field(default_factory=list)


def conversions_reward(*, actor, order_ids=(), token_ids=(), member_ids=()) -> RewardedConversions:
    """Reward the chosen new conversions through the earning rules that are active now."""
    done = RewardedConversions()
    order_rule, signup_rule = active_rule(EarnRuleKind.ORDER), active_rule(EarnRuleKind.SIGNUP)
    for order in Order.objects.filter(pk__in=order_ids, member__isnull=False).order_by("pk"):
        _collect(done, lambda o=order: _reward_order(o, order_rule, actor), str(order))
    for token in RewardToken.objects.filter(pk__in=token_ids).order_by("pk"):
        _collect(
            done,
            lambda t=token: _credit_token(token=t.token, actor=actor, reason="Closed conversion", points=None),
            t_label(token),
        )
    for member in Member.objects.filter(pk__in=member_ids).order_by("pk"):
        _collect(done, lambda m=member: _reward_signup(m, signup_rule, actor), member.email)
    return done


def t_label(token) -> str:
    return f"token {token.token}"


def _collect(done: RewardedConversions, post, label: str) -> None:
    try:
        result = post()
    except LoyaltyError as error:
        done.refused.append(f"{label}: {error.message}")
        return
    if result.already_applied:
        done.already += 1
    elif result.entry is not None:
        done.credited += 1
        done.points += result.entry.points


def _reward_order(order: Order, rule: EarnRule | None, actor) -> PostResult:
    if rule is None:
        raise LoyaltyError("There is no active way to earn for orders.")
    # The live earning's base and rounding (goods after discounts; tax and shipping as the program says); the shares
    # of its recorded refunds then go back as on the live path, each refund once.
    points = order_rule_points(rule, order)
    if points <= 0:
        raise LoyaltyError("It earns no points under the current rule.")
    with transaction.atomic():
        Order.objects.select_for_update().filter(pk=order.pk).first()  # the order first, as the store's events lock it
        result = _earn_order(order, rule, points, actor)
        if result.posted:
            order_refunds_settle(order=order.pk, actor=actor)
    return result


def _earn_order(order: Order, rule: EarnRule, points: int, actor) -> PostResult:
    return points_earn(
        member=order.member_id,
        points=points,
        reason=f"Order {order}",
        actor=actor,
        source=EntrySource.ORDER,
        source_ref=order.pk,
        idempotency_key=order_key(rule, order.pk),
        earn_rule=rule,
        hold_until=hold_until_for(rule),
    )


def _reward_signup(member: Member, rule: EarnRule | None, actor) -> PostResult:
    if rule is None or not rule.points:
        raise LoyaltyError("There is no active way to earn for signing up.")
    return points_earn(
        member=member,
        points=rule.points,
        reason="Signed up",
        actor=actor,
        source=EntrySource.ADMIN,
        idempotency_key=signup_key(rule, member.pk),
        earn_rule=rule,
        hold_until=hold_until_for(rule),
    )
