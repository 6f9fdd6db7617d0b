"""The program's data: members, the append-only points ledger, rewards and coupons, ways to earn, orders, settings.

Balances on Member are a cache of sums over LedgerEntry, written only by loyalty.services.ledger.
"""

from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Lower, Now
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class NegativeBalancePolicy(models.TextChoices):
    FORBID = "forbid", _("Forbid: refuse the debit")
    CAP = "cap", _("Cap: take what is available, record the shortfall")
    ALLOW = "allow", _("Allow: the balance may go below zero")


# The kinds of staff change an adjustment is (loyalty.rules.CHANGE_KINDS), as the forms and records name them.
CHANGE_KIND_CHOICES = [
    ("correction", _("Correction (puts the record right)")),
    ("goodwill", _("Goodwill credit")),
    ("write_off", _("Write-off")),
]


def environment_time_zone() -> str:
    """The default store time zone: TIME_ZONE from the environment (read when the settings row is made)."""
    return settings.TIME_ZONE


def validate_time_zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            _("“%(value)s” is not a time zone name; write it like America/New_York or Europe/Paris."),
            params={"value": value},
        ) from None


class ExpiryPolicy(models.TextChoices):
    NONE = "none", _("Never: points do not expire")
    AFTER_EARNING = "after_earning", _("A period after they are earned (each earned batch on its own)")
    INACTIVITY = "inactivity", _("After months without activity (all available points at once)")


class ExpiryUnit(models.TextChoices):
    DAYS = "days", _("days")
    MONTHS = "months", _("months")


class ProgramSettings(models.Model):
    """The program's settings: one row (pk=1), read with ProgramSettings.load()."""

    program_name = models.CharField(_("program name"), max_length=120, default="Rewards")
    program_started_at = models.DateTimeField(
        _("program started at"),
        default=timezone.now,
        help_text=_("Reward past actions credits sign-ups and orders from before this moment."),
    )
    negative_balance_policy = models.CharField(
        _("negative-balance policy (staff actions and imports)"),
        max_length=10,
        choices=NegativeBalancePolicy.choices,
        default=NegativeBalancePolicy.FORBID,
    )
    revert_negative_balance_policy = models.CharField(
        _("negative-balance policy (automatic reverts)"),
        max_length=10,
        choices=[c for c in NegativeBalancePolicy.choices if c[0] != NegativeBalancePolicy.FORBID],
        default=NegativeBalancePolicy.CAP,
        help_text=_("Automatic reverts never fail: cap takes what is available, allow lets the balance go negative."),
    )
    support_agent_limit = models.PositiveIntegerField(
        _("support agent limit per adjustment"),
        default=1000,
        help_text=_("The largest number of points (up or down) a support agent may adjust a member by in one action."),
    )
    support_agent_daily_limit = models.PositiveIntegerField(
        _("support agent daily total"),
        null=True,
        blank=True,
        help_text=_(
            "The most points (up or down, all members together) one support agent may move in a day. "
            "Empty: no daily cap."
        ),
    )
    hold_days_default = models.PositiveIntegerField(
        _("default hold days"),
        default=0,
        help_text=_("Days earned points stay pending (the return window) when a way to earn sets none."),
    )
    revert_enabled = models.BooleanField(_("revert earned points"), default=True)
    revert_on_cancelled = models.BooleanField(_("revert when cancelled"), default=True)
    revert_on_refunded = models.BooleanField(_("revert when refunded"), default=True)
    revert_on_partially_refunded = models.BooleanField(_("revert the refunded share on partial refunds"), default=True)
    revert_tags = models.CharField(
        _("revert when tagged"),
        max_length=500,
        blank=True,
        help_text=_("Comma-separated order tags, e.g. fraud, test."),
    )
    earn_on_tax = models.BooleanField(
        _("tax earns points"),
        default=False,
        help_text=_(
            "Off: an order earns on its goods after discounts, without tax. Refunds take back on the same base."
        ),
    )
    earn_on_shipping = models.BooleanField(
        _("shipping earns points"),
        default=False,
        help_text=_("Off: shipping earns nothing, and a shipping-only refund takes nothing back."),
    )
    store_time_zone = models.CharField(
        _("store time zone"),
        max_length=64,
        default=environment_time_zone,
        validators=[validate_time_zone],
        help_text=_(
            "Decides where a day starts and ends: customer groups' date ranges, “last 30 days”, CSV dates written "
            "without an offset, and the nightly jobs. For example America/New_York."
        ),
    )
    expiry_policy = models.CharField(
        _("points expire"),
        max_length=16,
        choices=ExpiryPolicy.choices,
        default=ExpiryPolicy.NONE,
        help_text=_(
            "After earning: each earned batch expires the period after it became available. Inactivity: all "
            "available points expire the period (in months) after the member's last earning or redemption."
        ),
    )
    expiry_period = models.PositiveIntegerField(
        _("expiry period"), default=12, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    expiry_unit = models.CharField(
        _("expiry period unit"),
        max_length=6,
        choices=ExpiryUnit.choices,
        default=ExpiryUnit.MONTHS,
        help_text=_("Inactivity always counts in months."),
    )
    point_value = models.DecimalField(
        _("value of one point"),
        max_digits=12,
        decimal_places=4,
        default=Decimal("0.0100"),
        validators=[MinValueValidator(0)],
        help_text=_(
            "What one point is worth to the store, in its currency (that of its orders): the liability report's value."
        ),
    )
    # Whether a staff adjustment counts toward lifetime (and so the VIP tier) unless the staff member says otherwise,
    # per kind of change (rules.CHANGE_KINDS; README, "Tier-safe corrections").
    lifetime_counts_correction = models.BooleanField(
        _("a correction counts toward lifetime"),
        default=True,
        help_text=_("Fixing a wrong balance: the tier follows the corrected figure."),
    )
    lifetime_counts_goodwill = models.BooleanField(
        _("a goodwill credit counts toward lifetime"),
        default=False,
        help_text=_("A gift of points (an apology, a gesture): off keeps the tier where the member earned it."),
    )
    lifetime_counts_write_off = models.BooleanField(
        _("a write-off counts toward lifetime"),
        default=False,
        help_text=_("Clearing points (set to 0, a group write-off): off never costs a member their tier."),
    )
    last_reconcile_at = models.DateTimeField(_("last ledger check"), null=True, blank=True, editable=False)
    last_reconcile_ok = models.BooleanField(_("last ledger check clean"), null=True, editable=False)
    last_reconcile_report = models.TextField(_("last ledger check report"), blank=True, editable=False)

    def lifetime_defaults(self) -> dict[str, bool]:
        """Whether each kind of staff change counts toward lifetime by default (rules.adjustment_counts)."""
        return {
            "correction": self.lifetime_counts_correction,
            "goodwill": self.lifetime_counts_goodwill,
            "write_off": self.lifetime_counts_write_off,
        }

    class Meta:
        verbose_name = _("program settings")
        verbose_name_plural = _("program settings")
        constraints = [models.CheckConstraint(condition=models.Q(pk=1), name="program_settings_single_row")]

    def __str__(self):
        return str(self.program_name)

    @classmethod
    def load(cls):
        obj, _created = cls.objects.get_or_create(pk=1)
        return obj

    def revert_tag_list(self):
        return [t.strip().lower() for t in self.revert_tags.split(",") if t.strip()]


class StaffDailyTotal(models.Model):
    """Points a support agent moved on one day, kept by the ledger as it posts, for the daily cap."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    points = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "day"], name="staff_daily_total_unique")]

    def __str__(self):
        return f"{self.user_id} on {self.day}: {self.points}"


class FreedKey(models.Model):
    """An outside fact whose credit was undone (an import, a run or a group action undone): it may be credited again.

    Entries are never edited, so the undone entry keeps its idempotency key; the next credit of the same fact is
    keyed `live` (f"{key}#{generation}"; loyalty.keys). The ledger writes these rows when it reverses with
    `free_keys`.
    """

    key = models.CharField(max_length=200, primary_key=True)
    generation = models.PositiveIntegerField(default=1)
    live = models.CharField(max_length=220, unique=True, help_text=_("The key the fact's next credit carries."))

    def __str__(self):
        return self.live


class Member(models.Model):
    """A customer known to the program. The three point figures are caches of ledger sums."""

    email = models.EmailField(_("email"), max_length=254, unique=True, help_text=_("Stored in lower case."))
    customer_id = models.CharField(_("store customer id"), max_length=64, null=True, blank=True)
    first_name = models.CharField(_("first name"), max_length=150, blank=True)
    last_name = models.CharField(_("last name"), max_length=150, blank=True)
    signed_up_at = models.DateTimeField(_("signed up"), null=True, blank=True, help_text=_("Empty for a guest."))
    available_points = models.BigIntegerField(_("available"), default=0, editable=False)
    pending_points = models.BigIntegerField(_("pending"), default=0, editable=False)
    lifetime_points = models.BigIntegerField(_("lifetime"), default=0, editable=False)
    # All the points the member's batches were ever opened with (the last batch's `through`): with the available
    # balance it says how far spending has reached (loyalty.rules.batch_spent), so no debit writes to a batch.
    batched_points = models.BigIntegerField(_("batched"), default=0, db_default=0, editable=False)
    # The (tier, -id) index below serves tier lookups; a second index on tier alone would only slow balance updates.
    tier = models.ForeignKey(
        "tiers.Tier",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="members",
        db_index=False,
    )
    created_at = models.DateTimeField(_("known since"), default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("adjust_points", "Can adjust points (up to the support-agent limit)"),
            ("adjust_points_unlimited", "Can adjust points beyond the support-agent limit"),
            ("give_reward", "Can give a reward"),
            ("export_member", "Can export members"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(email=Lower("email")), name="member_email_lower_case"),
            models.UniqueConstraint(
                fields=["customer_id"],
                condition=models.Q(customer_id__isnull=False),
                name="member_customer_id_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["tier", "-id"], name="member_tier"),
            models.Index(fields=["signed_up_at"], name="member_signed_up"),
            models.Index(
                fields=["-id"],
                condition=models.Q(pending_points__gt=0),
                name="member_has_pending",
            ),
        ]

    def __str__(self):
        return self.email

    @property
    def name(self):
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def is_guest(self):
        return self.signed_up_at is None


class EntryKind(models.TextChoices):
    EARN = "earn", _("Earn")
    ADJUSTMENT = "adjustment", _("Adjustment")
    REDEMPTION = "redemption", _("Redemption")
    REVERSAL = "reversal", _("Reversal")
    EXPIRATION = "expiration", _("Expiration")


class EntryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    ACTIVE = "active", _("Active")
    REJECTED = "rejected", _("Rejected")


class EntrySource(models.TextChoices):
    ADMIN = "admin", _("Admin")
    IMPORT = "import", _("CSV import")
    BACKFILL = "backfill", _("Reward past actions")
    ORDER = "order", _("Order")
    SCHEDULE = "schedule", _("Scheduled job")
    GROUP = "group", _("Customer group action")
    SYSTEM = "system", _("System")


class LedgerEntry(models.Model):
    """One change of points. Never edited or deleted: a correction is a new entry.

    The one permitted change is a pending entry's status moving to active or rejected.
    """

    # Indexes are few on purpose: every one slows each insert. The composite (member, created) index serves member
    # lookups, so the foreign keys that are only ever checked on delete (which PROTECT refuses anyway) get none.
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="entries", db_index=False)
    points = models.BigIntegerField(_("points"))
    kind = models.CharField(_("kind"), max_length=12, choices=EntryKind.choices)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=EntryStatus.choices,
        default=EntryStatus.ACTIVE,
    )
    counts_toward_lifetime = models.BooleanField(_("counts toward lifetime"))
    reason = models.CharField(_("reason"), max_length=500)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
        db_index=False,
    )
    actor_system = models.CharField(_("by (system)"), max_length=100, blank=True)
    source = models.CharField(_("source"), max_length=10, choices=EntrySource.choices)
    source_ref = models.BigIntegerField(_("source id"), null=True, blank=True)
    earn_rule = models.ForeignKey(
        "EarnRule", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    reverses = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reversed_by",
        verbose_name=_("reverses"),
    )
    takes_back = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="taken_back_by",
        help_text=_("For a partial take-back (a partial refund): the earning it takes a share of."),
        db_index=False,
    )
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, null=True, blank=True)
    hold_until = models.DateTimeField(_("pending until"), null=True, blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    # An expiration's end on its member's line of batches (the member's spent points after it): it took the points
    # of the batches between spent_through + points (points is negative) and spent_through (loyalty.models.PointsBatch).
    spent_through = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        ordering = ["-created_at", "-id"]
        permissions = [
            ("reverse_entry", "Can reverse a credited entry"),
            ("approve_pending", "Can approve or reject pending points"),
            ("export_ledgerentry", "Can export ledger entries"),
        ]
        constraints = [
            models.CheckConstraint(condition=~models.Q(points=0), name="entry_points_not_zero"),
            models.UniqueConstraint(fields=["idempotency_key"], name="entry_idempotency_key_unique"),
            models.CheckConstraint(condition=models.Q(kind__in=EntryKind.values), name="entry_kind_valid"),
            models.CheckConstraint(
                condition=models.Q(status__in=EntryStatus.values),
                name="entry_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(source__in=EntrySource.values),
                name="entry_source_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(reverses__isnull=True) | models.Q(kind=EntryKind.REVERSAL),
                name="entry_only_reversals_reverse",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "-created_at", "-id"], name="entry_member_created"),
            models.Index(fields=["source", "source_ref"], name="entry_source_ref"),
            models.Index(
                fields=["hold_until"],
                condition=models.Q(status=EntryStatus.PENDING),
                name="entry_pending_hold",
            ),
            models.Index(fields=["takes_back"], condition=models.Q(takes_back__isnull=False), name="entry_takes_back"),
            models.Index(
                fields=["status_changed_at"],
                condition=models.Q(status_changed_at__isnull=False),
                name="entry_status_moved",
            ),
        ]

    def __str__(self):
        return f"{self.points:+d} {self.get_kind_display()} ({self.get_status_display()})"

    @property
    def actor_label(self):
        if self.actor_user_id:
            return self.actor_user.get_username()
        return self.actor_system or "system"


class PointsBatch(models.Model):
    """Points that became available together (an active earning, a credit adjustment, a credit reversal), written
    once, by the ledger service, in the transaction of the entry that made them active, and never changed.

    A member's batches stand end to end in spending order (loyalty.rules.BATCH_ORDER): `through` is the member's
    batched points up to and including this batch. Spending (every active debit) moves one figure, the member's spent
    points (rules.batch_spent), along that line, so what is left of a batch is the part of it beyond that figure
    (rules.batch_remaining) and the earliest batches are spent first without a write to any of them. An expiration
    records where its span of the line ends (LedgerEntry.spent_through): what it took from each batch is the overlap.
    """

    # The member is a copy of what the entry says, written only by the ledger service beside it: no foreign-key check
    # of its own (one per batch at every commit, a quarter of a bulk post's time); reconcile_ledger holds it to its
    # entry (loyalty.selectors.batch_link_differences).
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, related_name="batches", db_index=False, db_constraint=False
    )
    entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="batch")
    earned_at = models.DateTimeField(_("available since"), help_text=_("The expiry clock starts here."))
    points = models.BigIntegerField(_("points"))
    through = models.BigIntegerField(_("batched through"))

    class Meta:
        verbose_name = _("points batch")
        verbose_name_plural = _("points batches")
        constraints = [
            models.CheckConstraint(condition=models.Q(points__gt=0), name="batch_points_positive"),
            models.CheckConstraint(condition=models.Q(through__gte=models.F("points")), name="batch_through_ge_points"),
            models.UniqueConstraint(fields=["member", "through"], name="batch_member_through"),
        ]
        indexes = [
            models.Index(fields=["member", "earned_at"], name="batch_member_earned"),
        ]

    def __str__(self):
        return f"{self.points} points (entry #{self.entry_id})"


class LedgerDay(models.Model):
    """Daily totals of the ledger (by kind and way to earn), kept by beat: the dashboard and the liability report
    read these instead of millions of entries. A day's row sums the effects that happened that day in the store's
    time zone: entries created (active or pending) and pending entries moved (to active or rejected)."""

    day = models.DateField()
    kind = models.CharField(max_length=12, choices=EntryKind.choices)
    earn_rule_id = models.BigIntegerField(null=True, blank=True)
    available = models.BigIntegerField(default=0)
    pending = models.BigIntegerField(default=0)
    credited = models.BigIntegerField(default=0)
    debited = models.BigIntegerField(default=0)
    entries = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["day"], name="ledger_day_day")]

    def __str__(self):
        return f"{self.day} {self.kind}"


class LedgerDaysMark(models.Model):
    """How far the stored daily totals reach (one row): every effect before `through` is in LedgerDay, none after;
    readers sum only the ledger's effects from `through` on. Days before the mark's day are complete, the mark's own
    day holds its effects up to the mark. `zone`: the store time zone the stored days are days of (under another,
    readers ignore them and the next refresh sums every day again)."""

    through = models.DateTimeField()
    zone = models.CharField(max_length=64, default="")

    def __str__(self):
        return f"daily totals through {self.through:%Y-%m-%d %H:%M:%S}"


class ExpiryClockDay(models.Model):
    """The open points by the day their expiry clock started, under one policy (`policy`: "after_earning:12:months"),
    summed by beat with the daily totals: the liability report's expiry schedule reads these few rows instead of
    every open batch. The report computes them live when none match the policy in force."""

    policy = models.CharField(max_length=40)
    clock_day = models.DateField()
    points = models.BigIntegerField()
    computed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["policy", "clock_day"], name="expiry_clock_day_policy")]

    def __str__(self):
        return f"{self.clock_day}: {self.points}"


class LiabilityReport(LedgerDay):
    """The liability report and the dashboard, read from the daily totals (a page, not rows to edit): its view
    permission is what lets a program manager read them (support agents keep the plain home page)."""

    class Meta:
        proxy = True
        verbose_name = _("liability report")
        verbose_name_plural = _("liability report")


class Shortfall(models.Model):
    """Points a debit or reversal could not take because the member had already spent them (policy "cap")."""

    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="shortfalls")
    points = models.BigIntegerField(_("points not taken"))
    reason = models.CharField(_("reason"), max_length=500)
    entry = models.ForeignKey(
        LedgerEntry,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="shortfalls",
        help_text=_("The earning that was being taken back, if any."),
    )
    posted_entry = models.OneToOneField(
        LedgerEntry,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="shortfall",
        help_text=_("The entry that took what was available, if anything was."),
    )
    reversal_of = models.OneToOneField(
        LedgerEntry,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reversal_shortfall",
        help_text=_("Set when a reversal could take nothing at all: it stands in for the reversal entry."),
    )
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=models.Q(points__gt=0), name="shortfall_points_positive")]

    def __str__(self):
        return f"{self.points} points not taken from {self.member}"


class EarnRuleKind(models.TextChoices):
    SIGNUP = "signup", _("Sign up")
    ORDER = "order", _("Place an order")
    CONVERSION = "conversion", _("Conversion (reward token)")


class EarnRule(models.Model):
    """A way to earn: how many points an action is worth, and how long they stay pending."""

    name = models.CharField(_("name"), max_length=120)
    kind = models.CharField(_("action"), max_length=12, choices=EarnRuleKind.choices)
    points = models.PositiveIntegerField(_("fixed points"), default=0)
    points_per_currency_unit = models.DecimalField(
        _("points per currency unit"),
        max_digits=10,
        decimal_places=4,
        null=True,
        blank=True,
    )
    hold_days = models.PositiveIntegerField(
        _("hold days"),
        null=True,
        blank=True,
        help_text=_("Empty: the program's default hold days."),
    )
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("way to earn")
        verbose_name_plural = _("ways to earn")
        ordering = ["kind", "name"]

    def __str__(self):
        return self.name


class Reward(models.Model):
    """A reward of the catalog: a coupon a member gets for points (or free, given by staff)."""

    name = models.CharField(_("name"), max_length=120)
    description = models.CharField(_("description"), max_length=255, blank=True)
    points_cost = models.PositiveIntegerField(_("points cost"))
    coupon_prefix = models.CharField(_("coupon code prefix"), max_length=20, default="LOYAL")
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["points_cost", "name"]

    def __str__(self):
        return f"{self.name} ({self.points_cost} points)"


class Coupon(models.Model):
    """A coupon given to a member for a reward; its code is unique across the store."""

    code = models.CharField(_("code"), max_length=40, unique=True)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="coupons")
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, related_name="coupons")
    redemption_entry = models.OneToOneField(
        LedgerEntry,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="coupon",
    )
    points_spent = models.PositiveIntegerField(_("points spent"), default=0)
    disabled = models.BooleanField(_("disabled"), default=False)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(_("given at"), default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["member", "-created_at"], name="coupon_member_created")]
        permissions = [("export_coupon", "Can export coupons (their codes)")]

    def __str__(self):
        return self.code


class Store(models.TextChoices):
    SHOPIFY = "shopify", "Shopify"
    WOOCOMMERCE = "woocommerce", "WooCommerce"
    CSV = "csv", _("CSV import")


class Order(models.Model):
    """An order mirrored from the store: what it earned is on the ledger (source "order")."""

    store = models.CharField(_("store"), max_length=12, choices=Store.choices)
    store_order_id = models.CharField(_("store order id"), max_length=64)
    order_number = models.CharField(_("order number"), max_length=64, blank=True)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, null=True, blank=True, related_name="orders")
    email = models.EmailField(_("email"), blank=True)
    customer_id = models.CharField(_("store customer id"), max_length=64, blank=True)
    total = models.DecimalField(_("total"), max_digits=14, decimal_places=2)
    # What the order is made of after edits and before refunds; the program settings say which parts earn
    # (loyalty.services.orders.earnable_amount).
    earnable_amount = models.DecimalField(
        _("goods after discounts"),
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("Goods after discounts, without tax and shipping; empty: the total less tax and shipping."),
    )
    tax_amount = models.DecimalField(_("tax on goods"), max_digits=14, decimal_places=2, default=0, db_default=0)
    shipping_amount = models.DecimalField(_("shipping"), max_digits=14, decimal_places=2, default=0, db_default=0)
    shipping_tax_amount = models.DecimalField(
        _("tax on shipping"), max_digits=14, decimal_places=2, default=0, db_default=0
    )
    prices_include_tax = models.BooleanField(_("prices include tax"), default=False, db_default=False)
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    financial_status = models.CharField(_("financial status"), max_length=40, blank=True)
    cancelled = models.BooleanField(_("cancelled"), default=False)
    tags = models.CharField(_("tags"), max_length=1000, blank=True)
    placed_at = models.DateTimeField(_("placed at"))
    updated_at = models.DateTimeField(_("last update"), default=timezone.now)
    test = models.BooleanField(_("test order"), default=False)
    # Where its earning stands: each reopening after a full revert earns again under keys of its own.
    reopenings = models.PositiveIntegerField(
        _("times reopened after a revert"), default=0, db_default=0, editable=False
    )
    points_reverted = models.BooleanField(
        _("points taken back"),
        default=False,
        db_default=False,
        editable=False,
        help_text=_("Its points went back because it was cancelled, refunded or tagged; paid again, it earns again."),
    )

    class Meta:
        ordering = ["-placed_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["store", "store_order_id"], name="order_store_id_unique"),
        ]
        indexes = [
            models.Index(fields=["member", "-placed_at"], name="order_member_placed"),
            models.Index(fields=["placed_at"], name="order_placed"),
            models.Index(fields=["email"], name="order_email"),
        ]

    def __str__(self):
        # Shopify's order name already starts with "#" ("#1001"): one "#", not "Shopify ##1001".
        return f"{self.get_store_display()} #{(self.order_number or self.store_order_id).lstrip('#')}"

    def tag_list(self):
        return [t.strip().lower() for t in self.tags.split(",") if t.strip()]


class OrderRefund(models.Model):
    """A refund of an order, as the store reported it; partial reverts are keyed on it.

    `amount` is the money returned. The parts say what it was for (goods after discounts, their tax, shipping, its
    tax); money beyond the parts (all of it, for a refund of an amount only) is tied to no part, and counts as the
    same share of every part of the order (prorated over the order's total).
    """

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds")
    store_refund_id = models.CharField(_("store refund id"), max_length=64)
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2)
    goods_amount = models.DecimalField(_("goods"), max_digits=14, decimal_places=2, default=0, db_default=0)
    tax_amount = models.DecimalField(_("tax on goods"), max_digits=14, decimal_places=2, default=0, db_default=0)
    shipping_amount = models.DecimalField(_("shipping"), max_digits=14, decimal_places=2, default=0, db_default=0)
    shipping_tax_amount = models.DecimalField(
        _("tax on shipping"), max_digits=14, decimal_places=2, default=0, db_default=0
    )
    created_at = models.DateTimeField(_("refunded at"), default=timezone.now)
    # When the program learnt of it: a credit made from the order's figures then (Reward past actions) already left
    # it out, so it is not taken back from that credit again.
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now, db_default=Now(), editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "store_refund_id"], name="refund_order_id_unique"),
        ]

    def __str__(self):
        return f"{self.amount} on {self.order}"


class TokenStatus(models.TextChoices):
    ISSUED = "issued", _("Issued")
    CLOSED = "closed", _("Closed (credited)")
    REJECTED = "rejected", _("Rejected")


class RewardToken(models.Model):
    """A code handed to a member (a referral link, say); when its lead closes as a sale, it credits the member once."""

    token = models.CharField(_("token"), max_length=64, unique=True)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="reward_tokens")
    earn_rule = models.ForeignKey(EarnRule, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=TokenStatus.choices,
        default=TokenStatus.ISSUED,
    )
    amount = models.DecimalField(_("sale amount"), max_digits=14, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(_("issued at"), default=timezone.now)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["member", "-created_at"], name="token_member_created")]

    def __str__(self):
        return self.token


# ---------------------------------------------------------------------------------------------------------------
# Customer groups, RFM scores and group actions (issue 6). Services: loyalty/services/groups.py, rfm.py;
# the member queryset of a group: loyalty/selectors_groups.py.


class AccountFilter(models.TextChoices):
    ANY = "", _("Members and guests")
    ACCOUNT = "account", _("Members with an account")
    GUEST = "guest", _("Guests only")


class RFMSegment(models.TextChoices):
    """Named segments from the R, F and M scores; the mapping is in loyalty/services/rfm.py (SEGMENT_RULES)."""

    CHAMPIONS = "champions", _("Champions")
    LOYAL = "loyal", _("Loyal")
    POTENTIAL = "potential", _("Potential")
    AT_RISK = "at_risk", _("At risk")
    HIBERNATING = "hibernating", _("Hibernating")
    LOST = "lost", _("Lost")


class CustomerGroup(models.Model):
    """A saved filter over members, or a static list of members (uploaded emails) when `is_static` is set."""

    name = models.CharField(_("name"), max_length=120, unique=True)
    description = models.CharField(_("description"), max_length=500, blank=True)
    is_static = models.BooleanField(
        _("static list"),
        default=False,
        help_text=_("A fixed list of members from uploaded emails; the filters below are then ignored."),
    )
    tier = models.ForeignKey(
        "tiers.Tier", on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("tier")
    )
    account = models.CharField(_("account"), max_length=10, choices=AccountFilter.choices, blank=True, default="")
    signed_up_from = models.DateField(_("signed up from"), null=True, blank=True)
    signed_up_to = models.DateField(_("signed up until"), null=True, blank=True)
    last_order_from = models.DateField(_("last order from"), null=True, blank=True)
    last_order_to = models.DateField(_("last order until"), null=True, blank=True)
    orders_min = models.PositiveIntegerField(_("orders at least"), null=True, blank=True)
    orders_max = models.PositiveIntegerField(_("orders at most"), null=True, blank=True)
    spent_min = models.DecimalField(_("total spent at least"), max_digits=14, decimal_places=2, null=True, blank=True)
    spent_max = models.DecimalField(_("total spent at most"), max_digits=14, decimal_places=2, null=True, blank=True)
    recency_min = models.PositiveSmallIntegerField(_("recency score at least"), null=True, blank=True)
    recency_max = models.PositiveSmallIntegerField(_("recency score at most"), null=True, blank=True)
    frequency_min = models.PositiveSmallIntegerField(_("frequency score at least"), null=True, blank=True)
    frequency_max = models.PositiveSmallIntegerField(_("frequency score at most"), null=True, blank=True)
    monetary_min = models.PositiveSmallIntegerField(_("monetary score at least"), null=True, blank=True)
    monetary_max = models.PositiveSmallIntegerField(_("monetary score at most"), null=True, blank=True)
    segment = models.CharField(_("RFM segment"), max_length=12, choices=RFMSegment.choices, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("customer group")
        verbose_name_plural = _("customer groups")
        ordering = ["name"]
        permissions = [("act_on_group", "Can adjust the points of a customer group")]

    def __str__(self):
        return self.name

    RANGES = (
        ("signed_up_from", "signed_up_to"),
        ("last_order_from", "last_order_to"),
        ("orders_min", "orders_max"),
        ("spent_min", "spent_max"),
        ("recency_min", "recency_max"),
        ("frequency_min", "frequency_max"),
        ("monetary_min", "monetary_max"),
    )
    SCORES = ("recency_min", "recency_max", "frequency_min", "frequency_max", "monetary_min", "monetary_max")

    def clean(self):
        """A filter that could match nobody by construction is refused with the field named, not saved to count 0."""
        errors = {}
        for name in self.SCORES:
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 5:
                errors[name] = _("Scores run from 1 to 5.")
        for low, high in self.RANGES:
            if high in errors:
                continue
            start, end = getattr(self, low), getattr(self, high)
            if start is not None and end is not None and start > end:
                errors[high] = _("This must not be below “%(field)s”.") % {
                    "field": self._meta.get_field(low).verbose_name
                }
        if errors:
            raise ValidationError(errors)


class CustomerGroupMember(models.Model):
    """One member of a static customer group."""

    group = models.ForeignKey(CustomerGroup, on_delete=models.CASCADE, related_name="static_members")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "member"], name="group_member_unique")]
        indexes = [models.Index(fields=["member"], name="group_member_member")]

    def __str__(self):
        return f"{self.member} in {self.group}"


class MemberRFM(models.Model):
    """A member's RFM scores (1-5, quintiles over members with orders), rewritten by each refresh."""

    # Scores are derived data, rewritten from the orders by every refresh: no database-level foreign key, so a refresh
    # of a million members does not check (and lock) a million member rows at commit. Django still deletes a member's
    # scores with the member (on_delete), and the next refresh drops scores of anyone without orders.
    member = models.OneToOneField(
        Member, on_delete=models.CASCADE, primary_key=True, related_name="rfm", db_constraint=False
    )
    last_order_at = models.DateTimeField(_("last order"))
    order_count = models.PositiveIntegerField(_("orders"))
    total_spent = models.DecimalField(_("total spent"), max_digits=16, decimal_places=2)
    recency = models.PositiveSmallIntegerField(_("recency score"))
    frequency = models.PositiveSmallIntegerField(_("frequency score"))
    monetary = models.PositiveSmallIntegerField(_("monetary score"))
    segment = models.CharField(_("segment"), max_length=12, choices=RFMSegment.choices)
    computed_at = models.DateTimeField(_("scores changed"), help_text=_("The refresh that last changed these scores."))

    class Meta:
        verbose_name = _("RFM score")
        verbose_name_plural = _("RFM scores")
        indexes = [models.Index(fields=["segment"], name="rfm_segment")]

    def __str__(self):
        return f"{self.member_id}: R{self.recency} F{self.frequency} M{self.monetary} ({self.segment})"


class JobStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")
    UNDOING = "undoing", _("Undoing")
    UNDONE = "undone", _("Undone")


class BackgroundJob(models.Model):
    """What every batch job of the back office keeps: who started it, when it ran, and its undo.

    Group actions and "Reward past actions" runs share it; their entries carry the job's id as source_ref.
    """

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    undone_at = models.DateTimeField(_("undone"), null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Set when an undo is asked for: a failed job resumes its undo, never its forward run, once this is set.
    undo_started_at = models.DateTimeField(_("undo started"), null=True, blank=True, editable=False)
    # Written by the running task every few seconds (loyalty/background.py): a job whose heartbeat goes silent is
    # queued again by the sweep, and offers Resume on its page.
    heartbeat_at = models.DateTimeField(_("last sign of its task"), null=True, blank=True, editable=False)
    # Starts of its task since the last one that finished: a task that keeps dying (a worker out of memory) ends
    # the job as failed after settings.JOB_MAX_STARTS.
    task_starts = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        abstract = True


class GroupAction(BackgroundJob):
    """A points adjustment of every member of a customer group, run in the background as one batch.

    Its entries carry source "group" and source_ref = this row's id, so each member's activity shows the comment and
    the whole batch can be undone.
    """

    group = models.ForeignKey(CustomerGroup, on_delete=models.PROTECT, related_name="actions", verbose_name=_("group"))
    apply_type = models.CharField(
        _("apply type"),
        max_length=10,
        choices=[("relative", _("Add or subtract")), ("set", _("Set absolute value"))],
        default="relative",
    )
    points = models.BigIntegerField(_("points"))
    comment = models.CharField(_("comment"), max_length=500)
    request_token = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    change_kind = models.CharField(
        _("kind of change"), max_length=10, choices=CHANGE_KIND_CHOICES, default="correction"
    )
    counts_toward_lifetime = models.BooleanField(_("counts toward lifetime"), default=True)
    status = models.CharField(_("status"), max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    members_total = models.PositiveIntegerField(_("members in the group"), default=0)
    members_done = models.PositiveIntegerField(_("members processed"), default=0)
    posted = models.PositiveIntegerField(_("entries posted"), default=0)
    unchanged = models.PositiveIntegerField(_("members already at the value"), default=0)
    refused = models.PositiveIntegerField(_("members refused"), default=0)
    points_credited = models.BigIntegerField(_("points credited"), default=0)
    points_debited = models.BigIntegerField(_("points debited"), default=0)
    problems = models.TextField(_("problems"), blank=True)

    class Meta:
        verbose_name = _("group action")
        verbose_name_plural = _("group actions")
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"#{self.pk} {self.group}: {self.comment}"

    @property
    def progress(self) -> int:
        """Percent done, for the progress bar."""
        if self.status in (JobStatus.DONE, JobStatus.UNDONE):
            return 100
        if not self.members_total:
            return 0
        return min(100, self.members_done * 100 // self.members_total)


class GroupActionRange(models.Model):
    """One range of a group action's members (a snapshot taken when the action starts): a transaction of its own,
    and above settings.GROUP_ACTION_SPREAD_MEMBERS a Celery task of its own that any worker takes (issue 16).

    `done` commits with the range's entries, so a range delivered twice posts nothing twice and counts once; the
    action's progress and counters are the sums over its done ranges."""

    action = models.ForeignKey(GroupAction, on_delete=models.CASCADE, related_name="ranges")
    position = models.PositiveIntegerField()
    member_ids = models.JSONField(default=list)
    done = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    posted = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    points_credited = models.BigIntegerField(default=0)
    points_debited = models.BigIntegerField(default=0)
    problems = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["action", "position"], name="group_action_range_once")]
        ordering = ["action", "position"]

    def __str__(self):
        return f"Group action #{self.action_id}: range {self.position}"


# End of the customer groups block (issue 6).
