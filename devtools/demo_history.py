"""Demo data for "Reward past actions": customers and orders from before the program started, with no points yet.

The demo program's own history (seed_demo) reaches 400 days back and is already on the ledger, so the program is
moved to have started 401 days ago, and the pre-program customers signed up and ordered before that. Running Reward
past actions on the demo then credits exactly these customers: members get sign-up and order points, guests orders.
Idempotent: a second call adds nothing.
"""

import random
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from loyalty.models import Member, Order, ProgramSettings, Store
from loyalty.services.members import new_member_tier_id

PROGRAM_AGE_DAYS = 401
EMAIL = "history{n}@demo.example"


def demo_history_seed(*, members: int = 200, seed: int = 11) -> dict:
    """Add `members` pre-program customers (one in five a guest) with 1-4 orders each; returns what was added."""
    if Member.objects.filter(email=EMAIL.format(n=0)).exists():
        return {"members": 0, "orders": 0}
    rng = random.Random(seed)
    now = timezone.now()
    started = now - timedelta(days=PROGRAM_AGE_DAYS)
    with transaction.atomic():
        program = ProgramSettings.load()
        if program.program_started_at > started:
            ProgramSettings.objects.filter(pk=1).update(program_started_at=started)
        tier_id = new_member_tier_id()
        people = Member.objects.bulk_create(
            [_member(n, started, rng, tier_id) for n in range(members)], batch_size=2000
        )
        if people and people[0].pk is None:  # a database without RETURNING: read the ids back
            people = list(Member.objects.filter(email__in=[p.email for p in people]).order_by("pk"))
        orders = [order for person in people for order in _orders(person, started, rng)]
        Order.objects.bulk_create(orders, batch_size=5000)
    return {"members": len(people), "orders": len(orders)}


def _member(n: int, started, rng: random.Random, tier_id: int | None) -> Member:
    joined = started - timedelta(days=rng.randint(2, 500), minutes=rng.randint(0, 1440))
    return Member(
        email=EMAIL.format(n=n),
        first_name=rng.choice(["Alma", "Bo", "Cato", "Dora", "Elio", "Fay"]),
        last_name=rng.choice(["Early", "Before", "Olden", "Prior"]),
        signed_up_at=None if n % 5 == 4 else joined,
        created_at=joined,
        tier_id=tier_id,
    )


def _orders(member: Member, started, rng: random.Random) -> list[Order]:
    made = []
    for k in range(rng.randint(1, 4)):
        amount = rng.randint(15, 300)
        made.append(
            Order(
                store=Store.SHOPIFY,
                store_order_id=f"hist-{member.pk}-{k}",
                order_number=f"H{member.pk}{k}",
                member=member,
                email=member.email,
                total=amount,
                earnable_amount=amount,
                financial_status="paid",
                cancelled=rng.random() < 0.05,  # a few cancelled orders, which earn nothing
                placed_at=started - timedelta(days=rng.randint(1, 400), minutes=rng.randint(0, 1440)),
            )
        )
    return made
