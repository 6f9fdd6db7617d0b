"""Load a demo program: tiers, ways to earn, rewards, staff logins, and members with a history.

Members are inserted in batches and their history goes through the ledger's bulk path, so a million members with
ten entries each is a matter of minutes, not hours.
"""

import os
import random
import time
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.models import User
from loyalty.actors import SystemActor
from loyalty.keys import order_earning_key, signup_earning_key
from loyalty.models import (
    Coupon,
    EarnRule,
    EarnRuleKind,
    EntryKind,
    EntrySource,
    EntryStatus,
    LedgerEntry,
    Member,
    Order,
    ProgramSettings,
    Reward,
    Store,
)
from loyalty.rules import hold_until
from loyalty.services import Posting, entries_post_bulk, reward_give
from loyalty.services.expiry import points_expire
from loyalty.services.members import new_member_tier_id
from loyalty.services.orders import order_rule_points
from loyalty.services.rfm import rfm_refresh
from loyalty.services.tables import fill_table
from loyalty.services.totals import ledger_days_refresh
from tiers.models import Tier

DEMO_PASSWORD = "demo-pass-2026"
STAFF = (
    # username, superuser, role group
    ("admin", True, "Program manager"),
    ("manager", False, "Program manager"),
    ("agent", False, "Support agent"),
)
FIRST = "Ada Ben Cleo Dan Eve Finn Gia Hugo Ines Jon Kim Leo Mia Noa Omar Pia Quinn Rosa Sam Tess Uma Vic Wen Yan Zoe"
LAST = "Abbott Baker Chen Diaz Evans Fox Garcia Hill Ito Jones Khan Lopez Moore Nash Ortiz Patel Reyes Smith Tran Weber"
CHUNK = 20_000  # members per chunk
POSTING_CHUNK = 100_000  # postings per call of the ledger's bulk path
ORDER_COLUMNS = (
    "store",
    "store_order_id",
    "order_number",
    "member_id",
    "email",
    "customer_id",
    "total",
    "earnable_amount",
    "currency",
    "financial_status",
    "cancelled",
    "tags",
    "placed_at",
    "updated_at",
    "test",
)


def _order_row(order):
    return tuple(getattr(order, column) for column in ORDER_COLUMNS)


HISTORY_DAYS = 400  # how far back the demo's history reaches (the dashboard's charts show its last months)
REDEEMED = 300  # the demo's redemptions are of the cheapest reward ("Free shipping")
DEMO_REDEMPTION = "Demo redemption: Free shipping"


def _affordable(postings: list[Posting]) -> list[Posting]:
    """Keep a demo redemption only where the member's active points at that moment cover it (a real one would have
    been refused otherwise)."""
    kept, balance, member = [], 0, None
    for posting in postings:
        if posting.member_id != member:
            member, balance = posting.member_id, 0
        if posting.kind == EntryKind.REDEMPTION and balance < -posting.points:
            continue
        if posting.status == EntryStatus.ACTIVE:
            balance += posting.points
        kept.append(posting)
    return kept


def _coupons_for_demo_redemptions() -> None:
    """Each demo redemption gets its coupon, as reward_give would have made it."""
    reward = Reward.objects.filter(points_cost=REDEEMED).order_by("pk").first()
    if reward is None:
        return
    entries = LedgerEntry.objects.filter(reason=DEMO_REDEMPTION, kind=EntryKind.REDEMPTION, coupon__isnull=True)
    Coupon.objects.bulk_create(
        [
            Coupon(
                code=f"{reward.coupon_prefix}-DEMO{entry_id}",
                member_id=member_id,
                reward=reward,
                redemption_entry_id=entry_id,
                points_spent=REDEEMED,
                created_at=created_at,
            )
            for entry_id, member_id, created_at in entries.values_list("id", "member_id", "created_at")
        ],
        batch_size=5000,
    )


def _order_earning(order: Order, ids: dict, rule: EarnRule) -> Posting:
    """A paid order's earning under "Place an order": as loyalty.services.orders credits it."""
    order.pk = ids[order.store_order_id]
    hold = hold_until(at=order.placed_at, days=rule.hold_days or 0)
    pending = hold is not None and hold > timezone.now()
    return Posting(
        order.member_id,
        order_rule_points(rule, order),
        f"{rule.name}: order {order}",
        at=order.placed_at,
        kind=EntryKind.EARN,
        status=EntryStatus.PENDING if pending else EntryStatus.ACTIVE,
        hold_until=hold if pending else None,
        earn_rule_id=rule.pk,
        idempotency_key=order_earning_key(order.pk, rule.pk),
        source=EntrySource.ORDER,
        source_ref=order.pk,
    )


class Command(BaseCommand):
    help = "Load the demo program (idempotent for the catalog; members are added once per email)."

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=300)
        parser.add_argument("--entries-per-member", type=int, default=4)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--quiet", action="store_true")

    def handle(self, *args, members, entries_per_member, seed, quiet, **options):
        rng = random.Random(seed)
        self._catalog()
        self._staff()
        self._finish_stopped_chunk(entries_per_member, rng, quiet)
        existing = Member.objects.count()
        if existing >= members:
            self._say(quiet, f"{existing} members already there; nothing added.")
        else:
            started = time.monotonic()
            first_ids = []
            # Members and their history go in chunks, so memory stays flat however many members are asked for.
            for chunk_start in range(existing, members, CHUNK):
                # One transaction per chunk: a stopped run leaves whole chunks, members with their history.
                with transaction.atomic():
                    ids = self._members(chunk_start, min(chunk_start + CHUNK, members), rng)
                    self._history(ids, entries_per_member, rng)
                first_ids = first_ids or [i for i, _ in ids[:20]]
                done = chunk_start + len(ids)
                self._say(quiet, f"  {done:,} members ({time.monotonic() - started:.0f} s)")
            self._rewards_given(first_ids)
            self._say(quiet, f"Added {members - existing} members with {entries_per_member} entries each.")
        # Points older than the demo's expiry policy expire now, and the dashboard's daily totals are summed.
        run = points_expire()
        self._say(quiet, f"Expiry run: {run.summary()}")
        ledger_days_refresh()
        # A fresh install's customer groups filter on RFM segments at once, not after the first nightly refresh.
        scored = rfm_refresh().members_scored
        self._say(quiet, f"RFM scores computed for {scored:,} members with orders.")
        self._logins()

    def _finish_stopped_chunk(self, per_member, rng, quiet):
        """Give a history to the members an older, stopped run inserted without one (they come last, in id order)."""
        last_with_history = LedgerEntry.objects.aggregate(last=Max("member_id"))["last"]
        if last_with_history is None:
            return  # an empty ledger: a fresh store, or a demo without history
        demo = Member.objects.filter(email__startswith="shopper", email__endswith="@demo.example")
        rows = demo.filter(pk__gt=last_with_history).order_by("pk").values_list("pk", "signed_up_at")
        orphans = list(rows)
        for i in range(0, len(orphans), CHUNK):
            self._history(orphans[i : i + CHUNK], per_member, rng)
        if orphans:
            self._say(quiet, f"  history given to {len(orphans):,} members a stopped run left without one")

    def _say(self, quiet, text):
        if not quiet:
            self.stdout.write(text)

    def _catalog(self):
        settings = ProgramSettings.load()
        settings.program_name = "Demo Rewards"
        settings.hold_days_default = 14
        settings.revert_enabled = True
        settings.revert_on_cancelled = settings.revert_on_refunded = settings.revert_on_partially_refunded = True
        settings.expiry_policy, settings.expiry_period, settings.expiry_unit = "after_earning", 12, "months"
        settings.save()
        for name, threshold in (("Bronze", 0), ("Silver", 500), ("Gold", 2000)):
            Tier.objects.get_or_create(name=name, defaults={"threshold": threshold})
        rules = (
            ("Sign up", EarnRuleKind.SIGNUP, 200, None, 0),
            ("Place an order", EarnRuleKind.ORDER, 0, Decimal("1"), 14),
            ("Closed referral", EarnRuleKind.CONVERSION, 300, None, 0),
        )
        for name, kind, points, per_unit, hold in rules:
            EarnRule.objects.get_or_create(
                name=name,
                kind=kind,
                defaults={"points": points, "points_per_currency_unit": per_unit, "hold_days": hold},
            )
        for name, cost, prefix in (
            ("$5 off", 500, "FIVE"),
            ("Free shipping", 300, "SHIP"),
            ("$20 off", 1800, "TWENTY"),
        ):
            Reward.objects.get_or_create(name=name, defaults={"points_cost": cost, "coupon_prefix": prefix})

    def _staff(self):
        for username, superuser, role in STAFF:
            user, created = User.objects.get_or_create(
                username=username, defaults={"is_staff": True, "is_superuser": superuser, "email": f"{username}@demo"}
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save()
            if group := Group.objects.filter(name=role).first():
                user.groups.add(group)

    def _members(self, start, stop, rng):
        """Insert members start..stop-1; returns [(id, signed_up_at)] in id order."""
        first, last = FIRST.split(), LAST.split()
        now = timezone.now()
        batch, tier_id = [], new_member_tier_id()
        for n in range(start, stop):
            joined = now - timedelta(days=rng.randint(1, 900))
            batch.append(
                Member(
                    email=f"shopper{n}@demo.example",
                    customer_id=str(7_000_000 + n),
                    first_name=rng.choice(first),
                    last_name=rng.choice(last),
                    signed_up_at=None if rng.random() < 0.2 else joined,
                    created_at=joined,
                    tier_id=tier_id,
                )
            )
        created = Member.objects.bulk_create(batch, batch_size=5000)
        if created and created[0].pk is None:  # a database without RETURNING: read the ids back
            emails = [m.email for m in batch]
            by_email = dict(Member.objects.filter(email__in=emails).values_list("email", "id"))
            for m in created:
                m.pk = by_email[m.email]
        return sorted((m.pk, m.signed_up_at) for m in created)

    def _history(self, member_ids, per_member, rng):
        """History through the ledger's bulk path: sign-up points, paid orders (some still pending), adjustments."""
        signup = EarnRule.objects.get(kind=EarnRuleKind.SIGNUP, name="Sign up")
        order_rule = EarnRule.objects.get(kind=EarnRuleKind.ORDER, name="Place an order")
        actor = SystemActor("demo data")
        now = timezone.now()
        postings, orders = [], []
        oldest = now - timedelta(days=HISTORY_DAYS)
        for member_id, signed_up_at in member_ids:
            if signed_up_at:  # guests have no account, so no sign-up points
                postings.append(
                    Posting(
                        member_id,
                        signup.points,
                        "Signed up",
                        kind=EntryKind.EARN,
                        earn_rule_id=signup.pk,
                        idempotency_key=signup_earning_key(member_id, signup.pk),
                        at=max(signed_up_at, oldest),
                    )
                )
            # Every member gets exactly `per_member` entries: guests have no sign-up, so one more order instead.
            for k in range(per_member - 1 if signed_up_at else per_member):
                if rng.random() < 0.8:
                    # Orders still in their return window are pending, as the store's own events would leave them.
                    pending = rng.random() < 0.15
                    days_ago = rng.randint(0, order_rule.hold_days - 1) if pending else rng.randint(15, 400)
                    orders.append(
                        Order(
                            store=Store.SHOPIFY,
                            store_order_id=f"{member_id}-{k}",
                            order_number=f"{member_id}{k:02d}",
                            member_id=member_id,
                            total=(amount := rng.randint(15, 400)),
                            earnable_amount=amount,
                            financial_status="paid",
                            placed_at=now - timedelta(days=days_ago, minutes=rng.randint(0, 1439)),
                        )
                    )
                    postings.append(len(orders) - 1)  # the order's earning, once the order has its id
                else:
                    at = now - timedelta(days=rng.randint(0, HISTORY_DAYS), minutes=rng.randint(0, 1439))
                    postings.append(Posting(member_id, rng.choice((50, 100, -50)), "Goodwill gesture", at=at))
            if rng.random() < 0.35:  # some members spent points on a reward, a few weeks ago (coupons follow)
                at = now - timedelta(days=rng.randint(1, 120), minutes=rng.randint(0, 1439))
                postings.append(Posting(member_id, -REDEEMED, DEMO_REDEMPTION, kind=EntryKind.REDEMPTION, at=at))
        self._flush(postings, orders, actor, order_rule)

    @staticmethod
    def _flush(postings, orders, actor, order_rule):
        """Orders go in with COPY (they are not ledger data); each earns under the key and rule its store's events
        would use (loyalty.keys), so every other path sees it as rewarded."""
        with transaction.atomic():
            fill_table(Order._meta.db_table, ORDER_COLUMNS, (_order_row(o) for o in orders))
            ids = dict(
                Order.objects.filter(
                    store=Store.SHOPIFY, store_order_id__in=[o.store_order_id for o in orders]
                ).values_list("store_order_id", "id")
            )
            postings = [_order_earning(orders[p], ids, order_rule) if isinstance(p, int) else p for p in postings]
            # Each member's history in the order it happened, so balances, batches and tiers move as they would have.
            now = timezone.now()
            postings.sort(key=lambda p: (p.member_id, p.at or now))
            postings = _affordable(postings)
            for i in range(0, len(postings), POSTING_CHUNK):
                entries_post_bulk(postings=postings[i : i + POSTING_CHUNK], actor=actor, source="system", policy="cap")
            _coupons_for_demo_redemptions()

    def _rewards_given(self, member_ids):
        reward = Reward.objects.order_by("points_cost").first()
        actor = SystemActor("demo data")
        for member in Member.objects.filter(pk__in=member_ids, available_points__gte=reward.points_cost):
            reward_give(member=member, reward=reward, deduct_points=True, actor=actor, reason="Demo redemption")

    def _logins(self):
        self.stdout.write(f"Admin: http://127.0.0.1:{os.environ.get('WEB_PORT') or 8000}/admin/")  # the Procfile's port
        for username, _superuser, role in STAFF:
            self.stdout.write(f"  {username:8} / {DEMO_PASSWORD}   ({role})")
