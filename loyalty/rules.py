"""The ledger's rulebook: every rule of points, written once, as pure functions.

Both writers follow it. The single path (services/ledger.py) calls these functions for each post. The bulk path
(services/ledger_bulk.py) calls them for every row it resolves one by one, and builds its set-based SQL from the
`*_sql` forms next to the Python ones; tests/loyalty/test_bulk_matches_single.py holds the two paths to one ledger.
Nothing here reads the database: callers hand in the figures (a balance, a limit, the program's policy).

Where each rule comes from: DOMAIN.md ("The ledger", "Staff actions", "The negative-balance policy"), after the
practice of the loyalty products merchants compare us with (Smile.io, LoyaltyLion, Yotpo).
"""

from dataclasses import dataclass
from datetime import timedelta

from .models import EntryKind, EntryStatus, NegativeBalancePolicy

RELATIVE = "relative"
SET_TO = "set"
APPLY_TYPES = (RELATIVE, SET_TO)
MAX_ACTION_POINTS = 10_000_000  # the most one action may move for one member: beyond it a typo, not a decision

# ---------------------------------------------------------------------------------------------------------------
# Lifetime (the "total points balance" the tier follows)

LIFETIME_KINDS = (EntryKind.EARN, EntryKind.ADJUSTMENT)


def counts_toward_lifetime(kind: str, *, choice: bool | None = None, reversed_counts: bool | None = None) -> bool:
    """Whether an entry of `kind` counts toward lifetime points.

    Earnings and adjustments count; redemptions and expirations do not (a reward never costs a member their tier);
    a reversal counts exactly as the entry it undoes (`reversed_counts`). A staff adjustment may say otherwise
    (`choice`: a goodwill credit or a write-off need not move the tier).
    """
    if kind == EntryKind.REVERSAL:
        return bool(reversed_counts)
    if kind == EntryKind.ADJUSTMENT and choice is not None:
        return choice
    return kind in LIFETIME_KINDS


def counts_toward_lifetime_sql(kind: str, *, choice: bool | None = None) -> str:
    """The SQL form of counts_toward_lifetime for an entry kind given as an SQL expression (no reversal): a staff
    adjustment's `choice` wins over its kind, as in the Python form."""
    kinds = ", ".join(f"'{k}'" for k in LIFETIME_KINDS)
    by_kind = f"({kind} IN ({kinds}))"
    if choice is None:
        return by_kind
    answer = "TRUE" if choice else "FALSE"
    return f"(CASE WHEN {kind} = '{EntryKind.ADJUSTMENT}' THEN {answer} ELSE {by_kind} END)"


# The kinds of staff change an adjustment is, each with its own default for counting toward lifetime (a program
# setting): a correction puts the record right, so the tier follows it; a goodwill credit (a gift) and a write-off
# (clearing a balance) leave the tier where the member earned it.
CORRECTION, GOODWILL, WRITE_OFF = "correction", "goodwill", "write_off"
CHANGE_KINDS = (CORRECTION, GOODWILL, WRITE_OFF)
LIFETIME_DEFAULTS = {CORRECTION: True, GOODWILL: False, WRITE_OFF: False}


def adjustment_counts(change_kind: str, *, answer: bool | None, defaults: dict[str, bool]) -> bool:
    """Whether a staff adjustment counts toward lifetime: the staff member's answer, else the program's default for
    the kind of change (`defaults`: kind -> bool, from ProgramSettings.lifetime_defaults)."""
    if answer is not None:
        return answer
    if change_kind not in CHANGE_KINDS:
        raise ValueError(f"unknown kind of change {change_kind!r}: use {', '.join(CHANGE_KINDS)}")
    return defaults.get(change_kind, LIFETIME_DEFAULTS[change_kind])


# ---------------------------------------------------------------------------------------------------------------
# Holds (the return window)


def hold_days(*, rule_hold_days: int | None, program_default: int) -> int:
    """Days earned points stay pending: the way to earn's own hold, else the program's default."""
    return program_default if rule_hold_days is None else rule_hold_days


def hold_until(*, at, days: int):
    """When points earned at `at` (a datetime) stop being pending; None when there is no hold."""
    return at + timedelta(days=days) if days else None


# ---------------------------------------------------------------------------------------------------------------
# Input checks shared by every staff path


def reward_refusal(reward_name: str, cost: int, email: str, available: int) -> str | None:
    """Why a reward cannot be given for `cost` points to a member with `available` points (None when it can): a
    reward is never given on credit, whatever the negative-balance policy."""
    if cost <= available:
        return None
    return f"Cannot give {reward_name} for {cost:,} points: {email} has only {available:,} available."


def points_refusal(points, apply_type: str) -> str | None:
    """Why `points` cannot be asked for with this apply type (None when it can): a whole number within the action
    limit, never 0 when relative, never below 0 for "set to"."""
    if apply_type not in APPLY_TYPES:
        return f"Unknown apply type {apply_type!r}: use relative or set."
    if not isinstance(points, int) or isinstance(points, bool):
        return "Points must be a whole number."
    if abs(points) > MAX_ACTION_POINTS:
        return f"Points must be within ±{MAX_ACTION_POINTS:,}."
    if apply_type == RELATIVE and points == 0:
        return "Points must not be 0."
    if apply_type == SET_TO and points < 0:
        return "Set to needs a balance of 0 or more."
    return None


# ---------------------------------------------------------------------------------------------------------------
# Debits and the negative-balance policy


def resolve_debit(*, available: int, points: int, policy: str) -> tuple[int, int]:
    """Apply the negative-balance policy to a change of `points` against `available` points.

    Returns (points to post, shortfall). forbid: nothing posted and the whole debit short (the caller refuses);
    cap: what is available is taken and the rest recorded; allow: the balance may go below zero.
    """
    if points >= 0 or available + points >= 0 or policy == NegativeBalancePolicy.ALLOW:
        return points, 0
    if policy == NegativeBalancePolicy.FORBID:
        return 0, -points
    take = max(available, 0)
    return -take, -points - take


def resolve_set_to(*, available: int, target: int) -> int:
    """The change "set to N" posts: bringing available to exactly N (0 when it is there already)."""
    return target - available


def debit_refusal(*, what: str, want: int, available: int, email: str) -> str:
    """The sentence a refused debit reads, with the numbers. `what`: "debit", "reverse" or "take_back"."""
    if what == "reverse":
        return f"Cannot reverse: {want:,} points were credited but only {available:,} are available."
    if what == "take_back":
        return f"Cannot take back {want:,} points: only {available:,} are available."
    return f"Cannot take {want:,} points from {email}: only {available:,} are available."


@dataclass(frozen=True)
class Decision:
    """One posting's fate against the member's balance at that moment."""

    change: int  # the change asked for (for "set to", the difference)
    posted: int = 0  # points the entry carries (0: no entry)
    shortfall: int = 0  # points not taken under "cap"
    refusal: str | None = None
    nothing: bool = False  # "set to" the balance the member already has


def decide(
    *, available: int, points: int, apply_type: str, status: str, policy: str, what: str, email: str
) -> Decision:
    """Decide a posting against the member's available points: "set to", then the negative-balance policy.

    `points` is the relative change, or the target for "set to"; only active postings spend available points.
    """
    change = resolve_set_to(available=available, target=points) if apply_type == SET_TO else points
    if apply_type == SET_TO and change == 0:
        return Decision(change=0, nothing=True)
    if status != EntryStatus.ACTIVE:
        return Decision(change=change, posted=change)
    posted, short = resolve_debit(available=available, points=change, policy=policy)
    if policy == NegativeBalancePolicy.FORBID and short:
        return Decision(change=change, refusal=debit_refusal(what=what, want=-change, available=available, email=email))
    return Decision(change=change, posted=posted, shortfall=short)


# ---------------------------------------------------------------------------------------------------------------
# Reversal: what can be undone, and for how much


def reversal_refusal(
    *, entry_id: int, kind: str, status: str, reversed_by: int | None, reversed_without_entry: bool, remaining: int
) -> str | None:
    """Why an entry cannot be reversed (None when it can).

    A reversal is not reversed again (adjust instead); a rejected entry holds nothing; an entry is reversed once
    (by a reversal entry, or by a shortfall when nothing could be taken); an earning taken back in full by partial
    reverts has nothing left.
    """
    if kind == EntryKind.REVERSAL:
        return REVERSAL_REFUSALS["reversal"].format(id=entry_id)
    if status == EntryStatus.REJECTED:
        return REVERSAL_REFUSALS["rejected"].format(id=entry_id)
    if reversed_by is not None:
        return REVERSAL_REFUSALS["reversed"].format(id=entry_id, by=reversed_by)
    if reversed_without_entry:
        return REVERSAL_REFUSALS["reversed_short"].format(id=entry_id)
    if remaining == 0:
        return REVERSAL_REFUSALS["taken_back"].format(id=entry_id)
    return None


REVERSAL_REFUSALS = {
    "reversal": "Entry #{id} is itself a reversal; adjust the points instead.",
    "rejected": "Entry #{id} was rejected: there is nothing to reverse.",
    "reversed": "Entry #{id} was already reversed by entry #{by}.",
    "reversed_short": "Entry #{id} was already reversed (nothing could be taken; see its shortfall).",
    "taken_back": "Entry #{id} was already taken back in full by partial reverts (or recorded as a shortfall).",
}


def reversal_refusal_sql(*, entry: str, reversed_by: str, reversed_without_entry: str, remaining: str) -> str:
    """reversal_refusal as an SQL CASE over SQL expressions (the entry's alias; the reversing entry's id or NULL;
    a boolean; the points left): NULL when the entry can be reversed. The sentences are the same templates."""

    def sentence(name: str, **values: str) -> str:
        return _sql_sentence(REVERSAL_REFUSALS[name], id=f"{entry}.id", **values)

    return f"""CASE WHEN {entry}.kind = '{EntryKind.REVERSAL}' THEN {sentence("reversal")}
                WHEN {entry}.status = '{EntryStatus.REJECTED}' THEN {sentence("rejected")}
                WHEN {reversed_by} IS NOT NULL THEN {sentence("reversed", by=reversed_by)}
                WHEN {reversed_without_entry} THEN {sentence("reversed_short")}
                WHEN {remaining} = 0 THEN {sentence("taken_back")} END"""


NOT_PENDING = "Entry #{id} is {status}, not pending."


def not_pending_refusal(*, entry_id: int, status: str) -> str | None:
    """Only a pending entry is approved or rejected (None when it is pending)."""
    return None if status == EntryStatus.PENDING else NOT_PENDING.format(id=entry_id, status=status)


def not_pending_refusal_sql(*, entry_id: str, status: str) -> str:
    """not_pending_refusal as an SQL expression (the sentence, or NULL when the status is pending)."""
    sentence = _sql_sentence(NOT_PENDING, id=entry_id, status=status)
    return f"CASE WHEN {status} <> '{EntryStatus.PENDING}' THEN {sentence} END"


def _sql_sentence(template: str, **values: str) -> str:
    """A sentence template ("Entry #{id} ...") as an SQL concatenation of its text and the given SQL expressions."""
    parts, rest = [], template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        name, _, rest = tail.partition("}")
        parts += [_sql_text(head), f"CAST({values[name]} AS varchar(20))"]
    parts.append(_sql_text(rest))
    return " || ".join(p for p in parts if p != "''")


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def earning_owed(*, earned: int, taken_back: int, not_recovered: int) -> int:
    """What an earning still owes: the points earned, less what was taken back and what was recorded as not
    recovered (a shortfall settles its part for good, so no later take-back asks for it again). Never below 0."""
    return max(earned - taken_back - not_recovered, 0)


def shortfall_owed(*, earned: int, taken_back: int, recorded_so_far: int, want: int) -> int:
    """The shortfall to record for one earning when `want` points could not be taken back: never more than it still
    owes, earned less taken back so far (this take-back included) less shortfalls already recorded against it
    (DOMAIN: "The shortfall of one earning never exceeds what it still owes"). Never below 0."""
    return max(min(want, earned - taken_back - recorded_so_far), 0)


def reversal_remaining(*, points: int, taken_back: int, not_recovered: int = 0) -> int:
    """What a reversal of an entry takes back: what an earning still owes (earning_owed; `taken_back` and
    `not_recovered` are positive numbers); any other entry's points in full."""
    return earning_owed(earned=points, taken_back=taken_back, not_recovered=not_recovered) if points > 0 else points


def take_back_points(*, want: int, earned: int, taken_back: int, not_recovered: int = 0) -> int:
    """A partial take-back (a refund's share) never takes more than the earning still owes (0 when nothing is)."""
    return max(0, min(want, earning_owed(earned=earned, taken_back=taken_back, not_recovered=not_recovered)))


# ---------------------------------------------------------------------------------------------------------------
# Staff limits (support agents; program managers and the system have none)


def limit_refusal(*, moved: int, limit: int | None) -> str | None:
    """A support agent moves at most the program's per-action limit for each member (points up or down)."""
    if limit is not None and abs(moved) > limit:
        return f"Changes of more than {limit:,} points need a program manager: this one is {abs(moved):,} points."
    return None


def daily_refusal(*, moved: int, moved_today: int, daily_limit: int | None) -> str | None:
    """A support agent moves at most the program's daily total (points up or down, all members, since midnight in
    the store's time zone); None (no cap) when the program sets none."""
    if daily_limit is not None and moved_today + abs(moved) > daily_limit:
        return (
            f"Support agents may move at most {daily_limit:,} points a day: {moved_today:,} moved today, "
            f"this would make {moved_today + abs(moved):,}."
        )
    return None


# ---------------------------------------------------------------------------------------------------------------
# Expiry and earned batches (DOMAIN "Expiry"; issue 15)
#
# Every active credit (an earning, a credit adjustment, a reversal that gives points back) is a batch; every active
# debit spends the earliest batches first. One policy holds for the whole program, so a batch's expiry date follows
# the day it became available, and "earliest-expiring first" is "earliest available first": batches are spent in the
# order they became available whatever the policy, and a change of policy never reorders them.
#
# A member's batches stand end to end on a line, in that order: a batch covers (through - points, through]. Spending
# moves one figure along the line, the member's spent points: every active debit pushes it by its points, credits
# leave it (batch_spent). What is left of a batch is the part of it beyond that figure (batch_remaining), so the
# earliest are spent first, a remainder never goes below 0, a credit on a balance below zero repays the debt before it
# can be spent, and the open remainders add up to the available balance (0 when it is below zero).

EXPIRY_NONE, EXPIRY_AFTER_EARNING, EXPIRY_INACTIVITY = "none", "after_earning", "inactivity"
BATCH_ORDER = ("through",)  # the spending order on every path: the order batches became available in


def add_period(day, *, period: int, unit: str):
    """`day` plus a period of days or months (a month-end clamps: 31 January + 1 month is 28 or 29 February)."""
    if unit == "days":
        return day + timedelta(days=period)
    months = day.month - 1 + period
    year, month = day.year + months // 12, months % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, _days_in_month(year, month)))


def _days_in_month(year: int, month: int) -> int:
    import calendar

    return calendar.monthrange(year, month)[1]


def expiry_unit(policy: str, unit: str) -> str:
    """Inactivity counts in months; a period after earning in the unit the program chose."""
    return "months" if policy == EXPIRY_INACTIVITY else unit


def expires_on(*, clock_day, policy: str, period: int, unit: str):
    """The day points expire: the period after `clock_day` (the day a batch became available, or, for inactivity, the
    member's last earning or redemption). None when points never expire. The run of that day takes them."""
    if policy == EXPIRY_NONE or clock_day is None:
        return None
    return add_period(clock_day, period=period, unit=expiry_unit(policy, unit))


def expired_by(*, clock_day, as_of, policy: str, period: int, unit: str) -> bool:
    """Whether points whose clock started on `clock_day` have expired by the run of day `as_of`."""
    day = expires_on(clock_day=clock_day, policy=policy, period=period, unit=unit)
    return day is not None and day <= as_of


def last_clock_day(*, as_of, policy: str, period: int, unit: str):
    """The latest clock day that has expired by `as_of`'s run (None when nothing expires): the SQL of the run and of
    the previews compares the clock day with it. Days are walked back from the period's naive inverse, so a
    month-end clamp gives the same answer as expired_by."""
    if policy == EXPIRY_NONE:
        return None
    unit = expiry_unit(policy, unit)
    day = as_of - timedelta(days=period) if unit == "days" else _minus_months(as_of, period)
    while not expired_by(clock_day=day, as_of=as_of, policy=policy, period=period, unit=unit):
        day -= timedelta(days=1)
    while expired_by(clock_day=day + timedelta(days=1), as_of=as_of, policy=policy, period=period, unit=unit):
        day += timedelta(days=1)
    return day


def _minus_months(day, months: int):
    total = day.year * 12 + day.month - 1 - months
    year, month = total // 12, total % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, _days_in_month(year, month)))


def batch_spent(*, batched: int, available: int) -> int:
    """How far spending has reached on a member's line of batches (points): all the points their batches were opened
    with, less what is available. Only active debits move it (each by its points); a credit raises both."""
    return batched - available


def batch_spent_sql(member: str) -> str:
    """batch_spent of a loyalty_member row aliased `member`, as SQL."""
    return f"({member}.batched_points - {member}.available_points)"


def batch_remaining(*, through: int, points: int, spent: int) -> int:
    """What is left of a batch (points) once the member's spending has reached `spent`: 0 when spending passed its
    end, all of it when spending has not reached its start."""
    return max(0, min(points, through - spent))


def batch_remaining_sql(*, through: str, points: str, spent: str) -> str:
    """batch_remaining as SQL."""
    return (
        f"(CASE WHEN {through} - {spent} <= 0 THEN 0 WHEN {through} - {spent} > {points} THEN {points} "
        f"ELSE {through} - {spent} END)"
    )


def span_overlap(*, through: int, points: int, span_end: int, span_points: int) -> int:
    """What of a batch (its end `through`, `points` long) lies in a span of the line that ends at `span_end` and is
    `span_points` long (an expiration's: LedgerEntry.spent_through and the points it took)."""
    return max(0, min(through, span_end) - max(through - points, span_end - span_points))


def span_overlap_sql(*, through: str, points: str, span_end: str, span_points: str) -> str:
    """span_overlap as SQL."""
    end = f"(CASE WHEN {through} < {span_end} THEN {through} ELSE {span_end} END)"
    start = (
        f"(CASE WHEN {through} - {points} > {span_end} - {span_points} THEN {through} - {points} "
        f"ELSE {span_end} - {span_points} END)"
    )
    return f"(CASE WHEN {end} - {start} > 0 THEN {end} - {start} ELSE 0 END)"
