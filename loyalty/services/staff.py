"""The staff policy: who may change points, and by how much, whatever page, job or command asks.

Every service that changes points for a staff member calls `staff_policy(actor, action)` first: it refuses a user
without the action's permission, and gives back the limits that hold for this user (none for a program manager or
the system). The ledger then checks each member's change against them as it posts (`StaffPolicy.refusal`) and adds
what a support agent moved to the day's total in the same transaction (`StaffPolicy.record`), so two requests at
once cannot both pass the daily cap.
"""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..actors import SystemActor
from ..errors import LoyaltyError
from ..models import ProgramSettings, StaffDailyTotal
from ..rules import daily_refusal, limit_refusal

UNLIMITED_PERMISSION = "loyalty.adjust_points_unlimited"

# The permission each staff action needs (roles: accounts/roles.py).
ACTION_PERMISSIONS = {
    "adjust": ("loyalty.adjust_points", "adjust points"),
    "credit": ("loyalty.adjust_points", "credit conversions"),  # Add conversion / points, New conversions
    "reward": ("loyalty.give_reward", "give rewards"),
    "reverse": ("loyalty.reverse_entry", "reverse entries"),
    "approve": ("loyalty.approve_pending", "approve or reject pending points"),
    "group": ("loyalty.act_on_group", "change the points of a customer group"),
    "import": ("imports.apply_importjob", "apply imports"),
    "import_undo": ("imports.undo_importjob", "undo imports"),
    "backfill": ("imports.run_backfill", "run or undo Reward past actions"),
}


class StaffRefused(LoyaltyError):
    """A staff member asked for something their role does not allow."""


@dataclass
class StaffPolicy:
    """The limits that hold for one actor in one action. `limit`: per member; `daily_limit`: all members today."""

    user_id: int | None = None
    limit: int | None = None
    daily_limit: int | None = None
    moved_today: int = 0
    moved: int = 0

    @property
    def limited(self) -> bool:
        return self.limit is not None or self.daily_limit is not None

    def refusal(self, points: int) -> str | None:
        """Why moving `points` (up or down) for one member is refused (None when allowed).

        The per-action limit holds for each change of each member (a row of a file, a member of a list action);
        the daily total adds up every change of the day, across actions. A change that is made is then counted
        with `add`.
        """
        if not self.limited or points == 0:
            return None
        return limit_refusal(moved=points, limit=self.limit) or daily_refusal(
            moved=points, moved_today=self.moved_today + self.moved, daily_limit=self.daily_limit
        )

    def add(self, points: int) -> None:
        """Count a change that was made (its size, up or down) toward the day's total."""
        if self.limited:
            self.moved += abs(points)

    def record(self) -> None:
        """Add what this action moved to the agent's total of the day (inside the caller's transaction)."""
        if self.user_id is None or not self.moved:
            return
        StaffDailyTotal.objects.filter(user_id=self.user_id, day=_today()).update(points=F("points") + self.moved)
        self.moved_today += self.moved
        self.moved = 0


def _today():
    return timezone.localdate()


def staff_policy(actor, action: str | None, *, program: ProgramSettings | None = None) -> StaffPolicy:
    """Check that `actor` may take `action` (a key of ACTION_PERMISSIONS) and return the limits that hold.

    The system (a SystemActor) has no limits. A staff user needs the action's permission (StaffRefused names it);
    without the permission to adjust beyond the limit (support agents), the program's per-action limit and daily
    total hold. Called inside the caller's transaction: the agent's row of the day is locked until it commits.
    Raises StaffRefused, or ValueError for an unknown action.
    """
    if isinstance(actor, SystemActor):
        return StaffPolicy()
    if action not in ACTION_PERMISSIONS:
        raise ValueError(f"a staff actor needs a known staff action, not {action!r}")
    permission, words = ACTION_PERMISSIONS[action]
    if not (actor.is_active and actor.is_staff and actor.has_perm(permission)):
        raise StaffRefused(f"{actor.get_username()} may not {words}: that needs the permission “{permission}”.")
    if actor.has_perm(UNLIMITED_PERMISSION):
        return StaffPolicy(user_id=None)
    program = program or ProgramSettings.load()
    policy = StaffPolicy(
        user_id=actor.pk, limit=program.support_agent_limit, daily_limit=program.support_agent_daily_limit
    )
    policy.moved_today = _lock_day(actor.pk)
    return policy


def daily_total_holds(actor) -> bool:
    """Whether the program's daily total holds for `actor` (a support agent, with a daily total set): then which of
    their changes it refuses depends on the order they are made in, so their big jobs keep one order (a file's)."""
    if isinstance(actor, SystemActor) or actor is None or actor.has_perm(UNLIMITED_PERMISSION):
        return False
    return ProgramSettings.load().support_agent_daily_limit is not None


def staff_refusal(actor, action: str, points: int) -> str | None:
    """What a form can tell at once, before queueing work: why moving `points` for one member would be refused
    (no permission, over a support agent's limit or daily total), or None. The ledger checks again as it posts."""
    try:
        with transaction.atomic():
            policy = staff_policy(actor, action)
    except StaffRefused as refused:
        return refused.message
    return policy.refusal(points)


def _lock_day(user_id: int) -> int:
    """The agent's points moved today, with the day's row locked for the rest of the transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("staff_policy for a limited actor must run inside a transaction")
    row, _created = StaffDailyTotal.objects.get_or_create(user_id=user_id, day=_today())
    return StaffDailyTotal.objects.select_for_update().values_list("points", flat=True).get(pk=row.pk)
