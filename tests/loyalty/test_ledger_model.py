"""A model-based test of the ledger's services: support agents and program managers act at random, and a small
reference model, written from DOMAIN.md and independently of the services, says what each member must hold and
which actions must be refused. After every step the balances, lifetime, tier and refusals agree with the model, and
the ledger reconciles."""

import itertools
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from loyalty.actors import SystemActor
from loyalty.errors import LoyaltyError
from loyalty.models import Coupon, LedgerEntry, Member, ProgramSettings
from loyalty.selectors import ledger_differences
from loyalty.services import entry_approve, entry_reject, entry_reverse, points_adjust, points_earn, reward_give
from loyalty.services.members import member_create
from tests.conftest import in_role
from tests.factories import RewardFactory, TierFactory

LIMIT, DAILY = 700, 3000  # the support agents' per-action limit and daily total
THRESHOLDS = {"Bronze": 0, "Silver": 500, "Gold": 2000}
REWARD_COST = 300
SYSTEM = SystemActor("model test")
_runs = itertools.count()


@dataclass
class ModelEntry:
    member: int
    points: int
    kind: str
    status: str
    counts: bool
    taken: bool = False  # reversed (or rejected by a reversal)


@dataclass
class ModelMember:
    available: int = 0
    pending: int = 0
    lifetime: int = 0


@dataclass
class Model:
    """What the rules say: the policy is "forbid" for staff; agents move at most LIMIT per change, DAILY a day."""

    members: list[ModelMember] = field(default_factory=list)
    entries: list[ModelEntry] = field(default_factory=list)
    agent_today: int = 0

    def tier(self, who: int) -> str:
        reached = [name for name, threshold in THRESHOLDS.items() if self.members[who].lifetime >= threshold]
        return max(reached, key=THRESHOLDS.get)

    def staff_allows(self, role: str, points: int) -> bool:
        return role == "manager" or (abs(points) <= LIMIT and self.agent_today + abs(points) <= DAILY)

    def count(self, role: str, points: int) -> None:
        if role == "agent":
            self.agent_today += abs(points)

    def post(self, who: int, points: int, kind: str, status: str = "active", counts: bool = True) -> None:
        m = self.members[who]
        if status == "pending":
            m.pending += points
        else:
            m.available += points
            m.lifetime += points if counts else 0
        self.entries.append(ModelEntry(who, points, kind, status, counts))


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        run = next(_runs)
        self.model = Model()
        self.agent = in_role(f"model-agent-{run}", "Support agent")
        self.manager = in_role(f"model-manager-{run}", "Program manager")
        self.people = [member_create(email=f"model{run}-{i}@model.example") for i in range(3)]
        self.model.members = [ModelMember() for _ in self.people]
        self.rows: list[LedgerEntry] = []  # the real entries, in step with model.entries
        self.reward = RewardFactory(name=f"Mug {run}", points_cost=REWARD_COST)

    def actor(self, role):
        return self.agent if role == "agent" else self.manager

    def expect(self, allowed: bool, call):
        """Run a service call; it must be refused exactly when the model says so. Returns its result."""
        try:
            result = call()
        except LoyaltyError as error:
            assert not allowed, f"refused, the model allows it: {error.message}"
            return None
        assert allowed, "allowed, the model refuses it"
        return result

    @rule(role=st.sampled_from(["agent", "manager"]), who=st.integers(0, 2), points=st.integers(-1500, 1500))
    def adjust(self, role, who, points):
        if points == 0:
            return
        m = self.model.members[who]
        allowed = self.model.staff_allows(role, points) and m.available + points >= 0
        result = self.expect(
            allowed,
            lambda: points_adjust(member=self.people[who], points=points, reason="model", actor=self.actor(role)),
        )
        if result:
            self.model.count(role, points)
            self.model.post(who, points, "adjustment")
            self.rows.append(result.entry)

    @rule(role=st.sampled_from(["agent", "manager"]), who=st.integers(0, 2), balance=st.integers(0, 2500))
    def set_to(self, role, who, balance):
        change = balance - self.model.members[who].available
        allowed = change == 0 or self.model.staff_allows(role, change)
        result = self.expect(
            allowed,
            lambda: points_adjust(
                member=self.people[who], points=balance, apply_type="set", reason="model", actor=self.actor(role)
            ),
        )
        if result and change:
            self.model.count(role, change)
            self.model.post(who, change, "adjustment")
            self.rows.append(result.entry)

    @rule(who=st.integers(0, 2), points=st.integers(1, 900), hold=st.booleans())
    def earn(self, who, points, hold):
        hold_until = timezone.now() + timedelta(days=7) if hold else None
        result = points_earn(
            member=self.people[who], points=points, reason="order", actor=SYSTEM, source="order", hold_until=hold_until
        )
        self.model.post(who, points, "earn", status="pending" if hold else "active")
        self.rows.append(result.entry)

    def _entry(self, index):
        return (index % len(self.rows)) if self.rows else None

    @rule(role=st.sampled_from(["agent", "manager"]), index=st.integers(0, 50), approve=st.booleans())
    def approve_or_reject(self, role, index, approve):
        if (i := self._entry(index)) is None:
            return
        e = self.model.entries[i]
        allowed = e.status == "pending" and self.model.staff_allows(role, e.points)
        service = entry_approve if approve else entry_reject
        if self.expect(allowed, lambda: service(entry=self.rows[i], actor=self.actor(role), reason="model")):
            self.model.count(role, e.points)
            m = self.model.members[e.member]
            m.pending -= e.points
            if approve:
                e.status, m.available, m.lifetime = "active", m.available + e.points, m.lifetime + e.points
            else:
                e.status = "rejected"

    @rule(role=st.sampled_from(["agent", "manager"]), index=st.integers(0, 50))
    def reverse(self, role, index):
        if (i := self._entry(index)) is None:
            return
        e = self.model.entries[i]
        m = self.model.members[e.member]
        reversible = e.kind != "reversal" and e.status != "rejected" and not e.taken
        covered = e.status == "pending" or m.available - e.points >= 0
        allowed = reversible and self.model.staff_allows(role, e.points) and covered
        result = self.expect(allowed, lambda: entry_reverse(entry=self.rows[i], reason="model", actor=self.actor(role)))
        if not result:
            return
        self.model.count(role, e.points)
        e.taken = True
        if e.status == "pending":
            e.status, m.pending = "rejected", m.pending - e.points
            return
        self.model.post(e.member, -e.points, "reversal", counts=e.counts)
        self.model.entries[-1].taken = True  # a reversal is never reversed again
        self.rows.append(result.entry)
        if e.kind == "redemption":
            assert Coupon.objects.get(redemption_entry=self.rows[i]).disabled  # its coupon goes with its points

    @rule(role=st.sampled_from(["agent", "manager"]), who=st.integers(0, 2), deduct=st.booleans())
    def give_reward(self, role, who, deduct):
        cost = REWARD_COST if deduct else 0
        allowed = self.model.members[who].available >= cost and self.model.staff_allows(role, cost)
        coupon = self.expect(
            allowed,
            lambda: reward_give(
                member=self.people[who], reward=self.reward, deduct_points=deduct, actor=self.actor(role)
            ),
        )
        if coupon and cost:
            self.model.count(role, cost)
            self.model.post(who, -cost, "redemption", counts=False)
            self.rows.append(coupon.redemption_entry)

    @invariant()
    def figures_match_the_model(self):
        if not hasattr(self, "model"):
            return
        for person, expected in zip(self.people, self.model.members):
            stored = Member.objects.select_related("tier").get(pk=person.pk)
            assert (stored.available_points, stored.pending_points, stored.lifetime_points) == (
                expected.available,
                expected.pending,
                expected.lifetime,
            )
            assert stored.tier.name == self.model.tier(self.people.index(person))
        assert ledger_differences() == []


@pytest.mark.django_db
def test_the_ledger_follows_the_reference_model():
    for name, threshold in THRESHOLDS.items():
        TierFactory(name=name, threshold=threshold)
    ProgramSettings.objects.update_or_create(
        pk=1,
        defaults={
            "support_agent_limit": LIMIT,
            "support_agent_daily_limit": DAILY,
            "negative_balance_policy": "forbid",
        },
    )
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=20,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
    assert LedgerEntry.objects.exists()
