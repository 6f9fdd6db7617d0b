"""Reward tokens: codes handed to members whose closed leads credit the conversion rule's points, once.

Used by the RewardToken admin (issue, close, reject), by hand, and by the tokens CSV kind of the imports app
(`token_close` / `token_reject` per row, or `tokens_close_bulk` for a whole file through the ledger's bulk path).
The credit's idempotency key is f"token:{token}", whichever way the token is closed.
"""

import secrets
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..errors import LoyaltyError
from ..keys import live_key, token_earning_key
from ..models import (
    EarnRule,
    EarnRuleKind,
    EntryKind,
    EntrySource,
    EntryStatus,
    LedgerEntry,
    Member,
    ProgramSettings,
    RewardToken,
    TokenStatus,
)
from ..rules import hold_days, hold_until
from .ledger import PostResult, entry_reject, points_earn
from .ledger_bulk import BulkResult, Posting, entries_post_bulk

TOKEN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


token_key = token_earning_key  # the ledger key of a token's credit (loyalty.keys)


@dataclass
class TokenResult:
    token: RewardToken
    post: PostResult | None = None
    already_applied: bool = False

    @property
    def points(self) -> int:
        return self.post.entry.points if self.post and self.post.posted else 0


def _new_code() -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(12))


def conversion_rule(token: RewardToken | None = None) -> EarnRule:
    """The token's own way to earn, else the active conversion rule (the oldest, if several)."""
    if token is not None and token.earn_rule_id:
        return token.earn_rule
    rule = EarnRule.objects.filter(kind=EarnRuleKind.CONVERSION, active=True).order_by("pk").first()
    if rule is None:
        raise LoyaltyError(_("There is no active conversion way to earn: add one before crediting reward tokens."))
    return rule


def conversion_points(rule: EarnRule, amount: Decimal | None) -> int:
    """Points per currency unit of the sale amount when the rule has a rate and the amount is known, else fixed."""
    if rule.points_per_currency_unit and amount is not None:
        return int((Decimal(amount) * rule.points_per_currency_unit).to_integral_value(rounding=ROUND_FLOOR))
    return int(rule.points)


def _hold_until(rule: EarnRule):
    days = hold_days(rule_hold_days=rule.hold_days, program_default=ProgramSettings.load().hold_days_default)
    return hold_until(at=timezone.now(), days=days)


def token_issue(*, member: Member | int, actor, earn_rule: EarnRule | None = None, token: str = "") -> RewardToken:
    """Issue a token to a member; a code is made unless one is given (a CRM's own code)."""
    member_id = member if isinstance(member, int) else member.pk
    if earn_rule is not None and earn_rule.kind != EarnRuleKind.CONVERSION:
        raise LoyaltyError(_("%(rule)s is not a conversion way to earn.") % {"rule": earn_rule.name})
    token = (token or "").strip()
    if token and RewardToken.objects.filter(token=token).exists():
        raise LoyaltyError(_("Token %(token)s already exists.") % {"token": token})
    for _attempt in range(5):
        try:
            with transaction.atomic():
                return RewardToken.objects.create(token=token or _new_code(), member_id=member_id, earn_rule=earn_rule)
        except IntegrityError:
            if token:
                raise LoyaltyError(_("Token %(token)s already exists.") % {"token": token}) from None
    raise LoyaltyError(_("Could not make a unique token; try again."))


def tokens_issue(*, members, actor, earn_rule: EarnRule | None = None) -> list[RewardToken]:
    """Issue one new token to each member (the admin action on a list of members)."""
    with transaction.atomic():
        return [token_issue(member=m, actor=actor, earn_rule=earn_rule) for m in members]


def _find(token: str, email: str | None) -> RewardToken:
    token = (token or "").strip()
    if not token:
        raise LoyaltyError(_("A token is required."))
    found = (
        RewardToken.objects.select_for_update(of=("self",))
        .select_related("member", "earn_rule")
        .filter(token=token)
        .first()
    )
    if found is None:
        raise LoyaltyError(_("Token %(token)s does not exist.") % {"token": token})
    if email and email.strip().lower() != found.member.email:
        raise LoyaltyError(
            _("Token %(token)s belongs to another member, not %(email)s.") % {"token": token, "email": email.strip()}
        )
    return found


def token_close(
    *,
    token: str,
    actor,
    amount: Decimal | None = None,
    email: str | None = None,
    source: str = EntrySource.ADMIN,
    source_ref: int | None = None,
) -> TokenResult:
    """Close a token as a sale: credit the conversion rule's points to its member, once (key "token:<token>")."""
    if amount is not None and Decimal(amount) < 0:
        raise LoyaltyError(_("The sale amount cannot be negative."))
    with transaction.atomic():
        found = _find(token, email)
        if found.status == TokenStatus.REJECTED:
            raise LoyaltyError(_("Token %(token)s was rejected; it cannot be credited.") % {"token": found.token})
        if found.status == TokenStatus.CLOSED:
            return TokenResult(token=found, already_applied=True)
        rule = conversion_rule(found)
        points = conversion_points(rule, amount)
        post = None
        if points > 0:
            post = points_earn(
                member=found.member_id,
                points=points,
                reason=f"Conversion: token {found.token} ({rule.name})",
                actor=actor,
                source=source,
                source_ref=source_ref,
                idempotency_key=token_key(found.token),
                earn_rule=rule,
                hold_until=_hold_until(rule),
            )
        found.status, found.closed_at, found.amount = TokenStatus.CLOSED, timezone.now(), amount
        found.earn_rule = found.earn_rule or rule
        found.save(update_fields=["status", "closed_at", "amount", "earn_rule"])
        return TokenResult(token=found, post=post, already_applied=bool(post and post.already_applied))


def token_reject(*, token: str, actor, reason: str = "", email: str | None = None) -> TokenResult:
    """Reject a token: its pending credit is rejected; an issued token can no longer be credited.

    Points already available are not touched here: reversing them is a staff decision ("Reverse conversion").
    """
    reason = (reason or "").strip() or f"Token {token} rejected"
    with transaction.atomic():
        found = _find(token, email)
        if found.status == TokenStatus.REJECTED:
            return TokenResult(token=found, already_applied=True)
        credit = LedgerEntry.objects.filter(idempotency_key=live_key(token_key(found.token))).first()
        if credit is not None and credit.status == EntryStatus.ACTIVE:
            raise LoyaltyError(
                _("Token %(token)s's %(points)s points are already available: reverse entry #%(entry)s instead.")
                % {"token": found.token, "points": f"{credit.points:,}", "entry": credit.pk}
            )
        if credit is not None and credit.status == EntryStatus.PENDING:
            entry_reject(entry=credit, actor=actor, reason=reason)
        found.status, found.closed_at = TokenStatus.REJECTED, timezone.now()
        found.save(update_fields=["status", "closed_at"])
        return TokenResult(token=found)


@dataclass
class TokenRow:
    """One closed token of an upload: `row` is the caller's row number, for its error report."""

    row: int
    token: str
    amount: Decimal | None = None
    email: str | None = None


def tokens_close_bulk(*, rows: list[TokenRow], actor, source: str, source_ref: int | None = None):
    """Close many tokens at once through the ledger's bulk path: the same keys, points and holds as token_close.

    Returns (BulkResult, problems) where problems is [(row, message)] for rows that cannot apply.
    """
    with transaction.atomic():
        tokens = {
            t.token: t
            for t in RewardToken.objects.select_for_update(of=("self",))
            .select_related("member", "earn_rule")
            .filter(token__in=[r.token.strip() for r in rows])
        }
        problems, postings, closing = [], [], []
        for r in rows:
            found, message = _check_row(tokens, r)
            if message:
                problems.append((r.row, message))
                continue
            if found.status == TokenStatus.CLOSED:
                continue
            rule = conversion_rule(found)
            points = conversion_points(rule, r.amount)
            hold = _hold_until(rule)
            if points > 0:
                postings.append(
                    Posting(
                        found.member_id,
                        points,
                        f"Conversion: token {found.token} ({rule.name})",
                        kind=EntryKind.EARN,
                        status=EntryStatus.PENDING if hold else EntryStatus.ACTIVE,
                        idempotency_key=token_key(found.token),
                        hold_until=hold,
                        earn_rule_id=rule.pk,
                    )
                )
            found.status, found.closed_at, found.amount = TokenStatus.CLOSED, timezone.now(), r.amount
            found.earn_rule_id = found.earn_rule_id or rule.pk
            closing.append(found)
        result = (
            entries_post_bulk(postings=postings, actor=actor, source=source, source_ref=source_ref)
            if postings
            else BulkResult()
        )
        RewardToken.objects.bulk_update(closing, ["status", "closed_at", "amount", "earn_rule"], batch_size=5000)
        return result, problems


def _check_row(tokens: dict, r: TokenRow):
    found = tokens.get((r.token or "").strip())
    if found is None:
        return None, _("Token %(token)s does not exist.") % {"token": r.token}
    if r.email and r.email.strip().lower() != found.member.email:
        return None, _("Token %(token)s belongs to another member, not %(email)s.") % {
            "token": r.token,
            "email": r.email.strip(),
        }
    if found.status == TokenStatus.REJECTED:
        return None, _("Token %(token)s was rejected; it cannot be credited.") % {"token": r.token}
    if r.amount is not None and Decimal(r.amount) < 0:
        return None, _("The sale amount cannot be negative.")
    return found, None
