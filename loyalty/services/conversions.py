"""Conversions credited by staff: "Add conversion / points" and rewarding "New conversions".

Built on the ledger service (points_earn): nothing here writes an entry or a balance itself. The keys are shared with
the other paths that credit the same facts (the tokens CSV, Reward past actions), so a fact is credited once whichever
path gets there first.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from ..errors import LoyaltyError
from ..keys import live_keys, order_earning_key, signup_earning_key
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
from ..rules import hold_days, hold_until
from ..timezones import day_start, store_today
from .ledger import PostResult, points_earn
from .orders import PAID_STATUSES, earn_refusal, full_revert_reason, order_rule_points, order_settle
from .orders.settle import _hold_until as order_hold_until
from .tokens import token_close, token_key

NEW_CONVERSIONS_DAYS = 30


def signup_key(rule: EarnRule, member_id: int) -> str:
    return signup_earning_key(member_id, rule.pk)


def active_rule(kind: str) -> EarnRule | None:
    return EarnRule.objects.filter(kind=kind, active=True).order_by("pk").first()


def hold_until_for(rule: EarnRule | None):
    """When points earned now under this rule stop being pending (None: active at once)."""
    default = ProgramSettings.load().hold_days_default
    days = hold_days(rule_hold_days=rule.hold_days if rule else None, program_default=default)
    return hold_until(at=timezone.now(), days=days)


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
# New conversions: the last 30 days' orders, closed tokens and sign-ups that earned nothing yet.
# One query lists them and re-checks what a form posts (a cancelled, test, unpaid or already rewarded order, a guest's
# "sign-up", a token never closed: none can be rewarded by posting its id).


@dataclass
class NewConversions:
    orders: list = field(default_factory=list)
    tokens: list = field(default_factory=list)
    signups: list = field(default_factory=list)


def _since():
    """The start of the store's day 30 days ago: "the last 30 days" are the store's days (loyalty.timezones)."""
    return day_start(store_today() - timedelta(days=NEW_CONVERSIONS_DAYS))


def _uncredited(objects: list, key_of) -> list:
    """The objects whose fact (key_of(obj): its base keys) is not all on the ledger yet (live keys, loyalty.keys)."""
    keys = {obj.pk: key_of(obj) for obj in objects}
    live = live_keys(k for ks in keys.values() for k in ks)
    on_ledger = set(
        LedgerEntry.objects.filter(idempotency_key__in=list(live.values())).values_list("idempotency_key", flat=True)
    )
    return [obj for obj in objects if any(live[k] not in on_ledger for k in keys[obj.pk])]


def _new_orders(ids=None, limit: int = 200) -> list:
    program = ProgramSettings.load()
    rules = list(EarnRule.objects.filter(kind=EarnRuleKind.ORDER, active=True).order_by("pk"))
    if not rules:
        return []
    orders = Order.objects.filter(
        placed_at__gte=max(_since(), program.program_started_at),
        member__isnull=False,
        cancelled=False,
        test=False,
        financial_status__in=PAID_STATUSES,
    ).select_related("member")
    orders = orders.filter(pk__in=ids) if ids is not None else orders.order_by("-placed_at")[: limit * 2]
    due = [o for o in orders if not earn_refusal(o, program) and not full_revert_reason(o, program)]
    return _uncredited(due, lambda o: [order_earning_key(o.pk, r.pk) for r in rules if order_rule_points(r, o) > 0])[
        :limit
    ]


def _new_tokens(ids=None, limit: int = 200) -> list:
    tokens = RewardToken.objects.filter(status=TokenStatus.CLOSED, closed_at__gte=_since()).select_related("member")
    tokens = tokens.filter(pk__in=ids) if ids is not None else tokens.order_by("-closed_at")[: limit * 2]
    return _uncredited(list(tokens), lambda t: [token_key(t.token)])[:limit]


def _new_signups(ids=None, limit: int = 200) -> list:
    rule = active_rule(EarnRuleKind.SIGNUP)
    if rule is None or not rule.points:
        return []
    members = Member.objects.filter(signed_up_at__isnull=False, signed_up_at__gte=_since())
    members = members.filter(pk__in=ids) if ids is not None else members.order_by("-signed_up_at")[: limit * 2]
    return _uncredited(list(members), lambda m: [signup_key(rule, m.pk)])[:limit]


def new_conversions(limit: int = 200) -> NewConversions:
    """What converted in the last 30 days and was not rewarded yet (at most `limit` of each kind, newest first)."""
    return NewConversions(
        orders=_new_orders(limit=limit), tokens=_new_tokens(limit=limit), signups=_new_signups(limit=limit)
    )


@dataclass
class RewardedConversions:
    credited: int = 0
    points: int = 0
    already: int = 0
    refused: list[str] = field(default_factory=list)


def conversions_reward(*, actor, order_ids=(), token_ids=(), member_ids=()) -> RewardedConversions:
    """Reward the chosen new conversions through the ways to earn that are active now.

    Every posted id is checked again with the query that lists them: an id that is not a new conversion (any more)
    is reported, never credited. Orders earn as the store's own events earn them (order_settle), with the same keys.
    """
    done = RewardedConversions()
    order_ids, token_ids, member_ids = set(order_ids), set(token_ids), set(member_ids)
    orders, tokens, signups = _new_orders(order_ids), _new_tokens(token_ids), _new_signups(member_ids)
    _not_new(done, order_ids - {o.pk for o in orders}, "order")
    _not_new(done, token_ids - {t.pk for t in tokens}, "token")
    _not_new(done, member_ids - {m.pk for m in signups}, "sign-up of member")
    signup_rule = active_rule(EarnRuleKind.SIGNUP)
    for order in sorted(orders, key=lambda o: o.pk):
        _collect(done, lambda o=order: _reward_order(o, actor), str(order))
    for token in sorted(tokens, key=lambda t: t.pk):
        _collect(
            done,
            lambda t=token: _credit_token(token=t.token, actor=actor, reason="Closed conversion", points=None),
            t_label(token),
        )
    for member in sorted(signups, key=lambda m: m.pk):
        _collect(done, lambda m=member: _reward_signup(m, signup_rule, actor), member.email)
    return done


def _not_new(done: RewardedConversions, ids, what: str) -> None:
    for pk in sorted(ids):
        done.refused.append(f"{what} #{pk}: not a new conversion (not in the list, or already rewarded)")


def t_label(token) -> str:
    return f"token {token.token}"


def _collect(done: RewardedConversions, post, label: str) -> None:
    try:
        results = post()
    except LoyaltyError as error:
        done.refused.append(f"{label}: {error.message}")
        return
    for result in results if isinstance(results, list) else [results]:
        if result.already_applied:
            done.already += 1
        elif result.entry is not None:
            done.credited += 1
            done.points += result.entry.points


def _reward_order(order: Order, actor) -> list[PostResult]:
    """Earn what the order is due now, as its store's events would (the same service, rules and keys)."""
    before = set(LedgerEntry.objects.filter(source=EntrySource.ORDER, source_ref=order.pk).values_list("pk", flat=True))
    order_settle(order=order, actor=actor)
    made = LedgerEntry.objects.filter(source=EntrySource.ORDER, source_ref=order.pk, kind=EntryKind.EARN).exclude(
        pk__in=before
    )
    return [PostResult(entry=entry) for entry in made]


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


# ---------------------------------------------------------------------------------------------------------------
# What rewarding them will credit: points per conversion, and the effect of the chosen ones (a preview)


@dataclass
class ConversionLine:
    """One new conversion with the points rewarding it credits now, and the postings that credit them."""

    kind: str  # "order", "token" or "signup"
    obj: object
    points: int
    postings: list = field(default_factory=list)


def conversion_lines(conversions: NewConversions) -> dict[str, list[ConversionLine]]:
    """Each new conversion with the points it earns under the ways to earn active now (as conversions_reward will
    credit it: the same rules, keys and holds)."""
    from .ledger_bulk import Posting

    program = ProgramSettings.load()
    order_rules = list(EarnRule.objects.filter(kind=EarnRuleKind.ORDER, active=True).order_by("pk"))
    signup_rule = active_rule(EarnRuleKind.SIGNUP)
    conversion_rule = active_rule(EarnRuleKind.CONVERSION)
    lines = {"order": [], "token": [], "signup": []}
    for order in conversions.orders:
        postings = [
            Posting(
                order.member_id,
                points,
                str(order),
                kind=EntryKind.EARN,
                status="pending"
                if (until := order_hold_until(order, rule, program)) and until > timezone.now()
                else "active",
                idempotency_key=order_earning_key(order.pk, rule.pk),
                hold_until=until,
                earn_rule_id=rule.pk,
            )
            for rule in order_rules
            if (points := order_rule_points(rule, order, program)) > 0
        ]
        lines["order"].append(ConversionLine("order", order, sum(p.points for p in postings), postings))
    for token in conversions.tokens:
        rule = token.earn_rule or conversion_rule
        points = rule.points if rule else 0
        lines["token"].append(
            ConversionLine(
                "token",
                token,
                points,
                _earn_postings(token.member_id, points, rule, token_key(token.token), "Closed conversion"),
            )
        )
    for member in conversions.signups:
        points = signup_rule.points if signup_rule else 0
        key = signup_key(signup_rule, member.pk) if signup_rule else None
        lines["signup"].append(
            ConversionLine("signup", member, points, _earn_postings(member.pk, points, signup_rule, key, "Signed up"))
        )
    return lines


def _earn_postings(member_id, points, rule, key, reason) -> list:
    from .ledger_bulk import Posting

    if not points or member_id is None:
        return []
    until = hold_until_for(rule)
    status = "pending" if until and until > timezone.now() else "active"
    return [
        Posting(
            member_id,
            points,
            reason,
            kind=EntryKind.EARN,
            status=status,
            idempotency_key=key,
            hold_until=until,
            earn_rule_id=rule.pk if rule else None,
        )
    ]


def chosen_conversions(*, order_ids=(), token_ids=(), member_ids=()) -> NewConversions:
    """The chosen ids that are new conversions still (the query that lists them, as conversions_reward checks)."""
    return NewConversions(
        orders=_new_orders(set(order_ids)) if order_ids else [],
        tokens=_new_tokens(set(token_ids)) if token_ids else [],
        signups=_new_signups(set(member_ids)) if member_ids else [],
    )


def conversions_preview(*, lines: dict[str, list[ConversionLine]], actor):
    """What rewarding these conversions credits: the ledger's bulk path in dry-run over their postings (the staff
    action "credit", as points_earn checks it)."""
    from .ledger_bulk import entries_post_bulk
    from .previews import _dry

    postings = [p for kind in ("order", "token", "signup") for line in lines[kind] for p in line.postings]
    return _dry(
        lambda: entries_post_bulk(
            postings=postings, actor=actor, source=EntrySource.ADMIN, action="credit", dry_run=True
        ),
        len(postings),
    )
