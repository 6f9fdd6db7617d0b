"""The bulk path and the one-by-one path give identical ledgers, balances, tiers, histories, coupons and refusals.

Random sequences of batches run twice from the same start: once through the single path (one service call per
operation), once through the bulk path (one call per batch), under each negative-balance policy, as the system and
as a support agent held to a per-action limit and a daily total. Every operation of the ledger is covered: relative
adjustments (counting toward lifetime or not) and "set to", earnings with and without a hold, approvals and
rejections, the release of matured holds, reversals of pending and active entries and of earnings partly taken back,
and rewards given with and without deducting points. The earned batches each path opens and spends (issue 15) are
part of the state compared.
"""

import os
import re
from datetime import timedelta
from functools import partial

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loyalty.actors import RELEASE_JOB, SystemActor
from loyalty.errors import LoyaltyError
from loyalty.models import (
    Coupon,
    EntryKind,
    EntryStatus,
    LedgerEntry,
    Member,
    PointsBatch,
    ProgramSettings,
    Shortfall,
    StaffDailyTotal,
)
from loyalty.services import (
    ACTIVATE,
    REJECT,
    Move,
    Posting,
    PostingsQuery,
    entries_post_bulk,
    entries_reverse_bulk,
    entry_approve,
    entry_reject,
    entry_reverse,
    entry_take_back,
    pending_release_matured,
    points_adjust,
    points_earn,
    reward_give,
)
from loyalty.services.members import member_create
from tests.factories import RewardFactory, TierFactory
from tiers.models import TierChange

SYSTEM = SystemActor("equivalence test")
MEMBERS = 3

member = st.integers(min_value=0, max_value=MEMBERS - 1)
entry = st.integers(min_value=0, max_value=40)  # an index into the ledger as it stands (modulo its length)
key = st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"]))
post_op = st.one_of(
    st.tuples(
        st.just("adjust"),
        member,
        st.integers(min_value=-900, max_value=900).filter(bool),
        key,
        st.sampled_from([None, True, False]),
    ),
    st.tuples(
        st.just("set"), member, st.integers(min_value=0, max_value=1500), key, st.sampled_from([None, True, False])
    ),
    st.tuples(st.just("earn"), member, st.integers(min_value=1, max_value=900), key, st.booleans()),
    st.tuples(st.just("approve"), entry),
    st.tuples(st.just("reject"), entry),
)
batch = st.one_of(
    st.tuples(st.just("post"), st.lists(post_op, min_size=1, max_size=8)),
    st.tuples(st.just("reverse"), st.lists(entry, min_size=1, max_size=4)),
    st.tuples(st.just("reward"), member, st.booleans()),
    st.tuples(st.just("take_back"), entry, st.integers(min_value=1, max_value=600)),
    st.tuples(st.just("release"), st.just(None)),
)


def _entries() -> list[LedgerEntry]:
    return list(LedgerEntry.objects.order_by("id"))


def _pick(entries, index):
    return entries[index % len(entries)] if entries else None


def _hold(with_hold: bool):
    return timezone.now() + timedelta(days=1) if with_hold else None


class Side:
    """One run of the batches: `single` or `bulk`. Records every refusal sentence, in order."""

    def __init__(self, members, actor, policy):
        self.members, self.actor, self.policy, self.refusals = members, actor, policy, []

    def attempt(self, call):
        try:
            call()
        except LoyaltyError as error:
            self.refusals.append(error.message)

    def run(self, batches, single: bool):
        for kind, *args in batches:
            if kind == "post":
                (self._post_single if single else self._post_bulk)(args[0])
            elif kind == "reverse":
                (self._reverse_single if single else self._reverse_bulk)(args[0])
            elif kind == "release":
                self._release(single)
            elif kind == "reward":
                who, deduct = args
                self.attempt(
                    partial(
                        reward_give,
                        member=self.members[who],
                        reward=self.reward,
                        deduct_points=deduct,
                        actor=self.actor,
                    )
                )
            elif kind == "take_back" and (target := _pick(_entries(), args[0])):
                self.attempt(
                    partial(
                        entry_take_back,
                        entry=target,
                        points=args[1],
                        reason="refund",
                        actor=SYSTEM,
                        idempotency_key=None,
                    )
                )

    # -- post batches: adjustments, "set to", earnings, approvals and rejections
    def _post_single(self, ops):
        entries = _entries()
        for op in ops:
            name, *args = op
            if name in ("adjust", "set"):
                who, points, key_, *counts = args
                self.attempt(
                    partial(
                        points_adjust,
                        member=self.members[who],
                        points=points,
                        reason="op",
                        actor=self.actor,
                        apply_type="relative" if name == "adjust" else "set",
                        source="import",
                        idempotency_key=key_,
                        policy=self.policy,
                        counts_toward_lifetime=counts[0] if counts else None,
                    )
                )
            elif name == "earn":
                who, points, key_, hold = args
                self.attempt(
                    partial(
                        points_earn,
                        member=self.members[who],
                        points=points,
                        reason="op",
                        actor=self.actor,
                        source="import",
                        idempotency_key=key_,
                        hold_until=_hold(hold),
                    )
                )
            elif target := _pick(entries, args[0]):
                service = entry_approve if name == "approve" else entry_reject
                self.attempt(partial(service, entry=target, actor=self.actor, reason="op"))

    def _post_bulk(self, ops):
        entries, postings = _entries(), []
        for op in ops:
            name, *args = op
            if name in ("adjust", "set"):
                who, points, key_, *counts = args
                postings.append(
                    Posting(
                        self.members[who].pk,
                        points,
                        "op",
                        apply_type="relative" if name == "adjust" else "set",
                        idempotency_key=key_,
                        counts_toward_lifetime=counts[0] if counts else None,
                    )
                )
            elif name == "earn":
                who, points, key_, hold = args
                status = EntryStatus.PENDING if hold else EntryStatus.ACTIVE
                postings.append(
                    Posting(
                        self.members[who].pk,
                        points,
                        "op",
                        kind=EntryKind.EARN,
                        status=status,
                        idempotency_key=key_,
                        hold_until=_hold(hold),
                    )
                )
            elif target := _pick(entries, args[0]):
                postings.append(Move(target.pk, ACTIVATE if name == "approve" else REJECT, "op"))
        if postings:
            call = {
                "postings": postings,
                "actor": self.actor,
                "source": "import",
                "action": "adjust",
                "policy": self.policy,
            }
            preview = entries_post_bulk(**call, dry_run=True)
            tiers = _tier_ranks()
            result = entries_post_bulk(**call)
            _assert_preview_is_apply(preview, result, tiers)
            self.refusals += [sentence for _seq, sentence in result.refused]

    # -- reversals: pending entries first, then active ones, each group in entry order (the bulk path's promise)
    def _targets(self, indexes):
        entries = _entries()
        chosen = {_pick(entries, i).pk: _pick(entries, i) for i in indexes if entries}
        ordered = sorted(chosen.values(), key=lambda e: e.pk)
        pending = [e for e in ordered if e.status == EntryStatus.PENDING and e.kind != EntryKind.REVERSAL]
        return pending + [e for e in ordered if e not in pending]

    def _reverse_single(self, indexes):
        for target in self._targets(indexes):
            self.attempt(lambda t=target: entry_reverse(entry=t, reason="undo", actor=self.actor, policy=self.policy))

    def _reverse_bulk(self, indexes):
        targets = self._targets(indexes)
        if targets:
            call = {
                "entry_ids": [t.pk for t in targets],
                "reason": "undo",
                "actor": self.actor,
                "source": "admin",
                "policy": self.policy,
            }
            preview = entries_reverse_bulk(**call, dry_run=True)
            tiers = _tier_ranks()
            result = entries_reverse_bulk(**call)
            _assert_preview_is_apply(preview, result, tiers)
            self.refusals += [sentence for _seq, sentence in result.refused]

    # -- the scheduled release of matured holds (as the release job, which has no limits)
    def _release(self, single):
        later = timezone.now() + timedelta(days=2)
        if not single:
            pending_release_matured(now=later)
            return
        for matured in LedgerEntry.objects.filter(status=EntryStatus.PENDING, hold_until__lte=later).order_by("id"):
            entry_approve(entry=matured, actor=RELEASE_JOB, reason="Hold ended")


def _snapshot(members):
    by_member = {m.pk: i for i, m in enumerate(members)}
    entries = _entries()
    index = {e.pk: i for i, e in enumerate(entries)}
    rows = [
        (
            by_member[e.member_id],
            e.points,
            e.kind,
            e.status,
            e.counts_toward_lifetime,
            e.idempotency_key,
            index.get(e.reverses_id),
            index.get(e.takes_back_id),
            e.spent_through,
        )
        for e in entries
    ]
    balances = [
        (m.available_points, m.pending_points, m.lifetime_points, m.batched_points, m.tier_id)
        for m in Member.objects.filter(pk__in=[m.pk for m in members]).order_by("id")
    ]
    changes = [
        (by_member[c.member_id], c.from_tier_id, c.to_tier_id, c.lifetime_points, index.get(c.entry_id))
        for c in TierChange.objects.order_by("id")
    ]
    shortfalls = [
        (by_member[s.member_id], s.points, index.get(s.entry_id), index.get(s.posted_entry_id))
        for s in Shortfall.objects.order_by("id")
    ]
    coupons = [(by_member[c.member_id], c.points_spent, c.disabled) for c in Coupon.objects.order_by("id")]
    moved = sorted(StaffDailyTotal.objects.exclude(points=0).values_list("points", flat=True))
    # Earned batches: each member's in the order they were opened, where each stands on the member's line.
    batches = [
        (by_member[b.member_id], index.get(b.entry_id), b.points, b.through)
        for b in PointsBatch.objects.filter(member_id__in=by_member).order_by("member_id", "id")
    ]
    return rows, balances, changes, shortfalls, coupons, moved, batches


def _one_side(batches, policy, agent, single):
    members = [member_create(email=f"m{i}@eq.example") for i in range(MEMBERS)]
    side = Side(members, agent or SYSTEM, policy)
    side.reward = RewardFactory(name="Tote", points_cost=300)
    for m in members:  # a starting balance so debits, "set to" and rewards have something to work on
        points_adjust(member=m, points=400, reason="start", actor=SYSTEM, source="import")
    side.run(batches, single=single)
    # Entry ids differ between the runs (PostgreSQL's sequence is not rolled back): sentences name entries by index.
    index = {e.pk: i for i, e in enumerate(_entries())}
    refusals = [re.sub(r"#(\d+)", lambda m: f"#e{index.get(int(m.group(1)))}", text) for text in side.refusals]
    return _snapshot(members), refusals


def _tier_ranks() -> dict[int, int]:
    """Each member's tier threshold now (-1 without a tier)."""
    return {m.pk: (m.tier.threshold if m.tier else -1) for m in Member.objects.select_related("tier")}


def _assert_preview_is_apply(preview, result, ranks_before) -> None:
    """A dry-run (a preview) counts what the apply then does: rows, points, members, refusals and tier moves."""
    fields = ("posted", "already_applied", "nothing_to_do", "refused", "shortfalls", "points_credited")
    fields += ("points_debited", "members_touched")
    assert {f: getattr(preview, f) for f in fields} == {f: getattr(result, f) for f in fields}
    after = _tier_ranks()
    ups = sum(1 for pk, rank in after.items() if rank > ranks_before.get(pk, -1))
    downs = sum(1 for pk, rank in after.items() if rank < ranks_before.get(pk, -1))
    assert (preview.tiers_up, preview.tiers_down) == (ups, downs)


@pytest.mark.django_db
@settings(
    max_examples=int(os.environ.get("BULK_EXAMPLES", 120)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(batch, min_size=1, max_size=10),
    policy=st.sampled_from(["forbid", "cap", "allow"]),
    as_agent=st.booleans(),
)
@example(  # found on PostgreSQL: an entry approved and then rejected in one batch
    batches=[
        ("post", [("adjust", 0, 1, None, None), ("earn", 0, 1, None, True), ("adjust", 0, 1, None, None)]),
        ("post", [("adjust", 0, 1, None, None), ("approve", 40), ("adjust", 0, 1, None, None), ("reject", 40)]),
    ],
    policy="forbid",
    as_agent=False,
)
@example(  # a pending take-back approved on its own is a change the agent makes, as on the single path
    batches=[
        ("post", [("earn", 0, 412, None, True), ("adjust", 0, 1, None, None)]),
        ("take_back", 3, 261),
        ("post", [("approve", 5)]),
    ],
    policy="forbid",
    as_agent=True,
)
@example(  # found on a helper's branch: rewards, "set to" 0 and two approvals of one entry in one batch
    batches=[
        ("reward", 0, False),
        ("reward", 0, True),
        (
            "post",
            [
                ("earn", 0, 1, None, True),
                ("set", 0, 0, None),
                ("adjust", 0, 1, None, None),
                ("adjust", 0, -2, None, None),
            ],
        ),
        ("post", [("adjust", 0, 1, None, None), ("approve", 4), ("adjust", 0, 1, None, None), ("approve", 32)]),
    ],
    policy="forbid",
    as_agent=False,
)
@example(  # found on PostgreSQL: a lone credit on a balance below zero opens a batch holding what the debt leaves
    batches=[
        ("post", [("adjust", 1, -500, None, None)]),
        ("post", [("adjust", 1, 428, "k1", None)]),
    ],
    policy="allow",
    as_agent=False,
)
@example(  # found on PostgreSQL: a reversal batch drew its entry ids in the order it read the ledger, not by entry
    batches=[
        ("reward", 0, False),
        ("reward", 0, True),
        (
            "post",
            [("reject", 33), ("earn", 0, 491, None, False), ("set", 0, 360, None, True), ("earn", 1, 107, None, True)],
        ),
        (
            "post",
            [
                ("reject", 1),
                ("adjust", 2, 355, "k2", None),
                ("set", 0, 293, None, None),
                ("adjust", 2, -348, None, False),
                ("approve", 31),
                ("earn", 0, 491, None, False),
                ("reject", 18),
                ("reject", 35),
            ],
        ),
        ("take_back", 20, 243),
        ("reward", 1, True),
        ("release", None),
        ("reverse", [18, 10, 0, 7]),
        ("reward", 2, False),
    ],
    policy="forbid",
    as_agent=False,
)
@example(  # found on PostgreSQL: rejecting an earning approved earlier is refused, and its pending take-back stays
    batches=[
        ("post", [("adjust", 0, 1, None, None), ("earn", 0, 1, None, True), ("adjust", 0, 1, None, None)]),
        ("take_back", 16, 1),
        ("post", [("adjust", 0, 259, None, None), ("adjust", 0, 616, None, None)]),
        ("post", [("approve", 13), ("adjust", 0, 1, None, None), ("adjust", 0, 1, None, None)]),
        ("post", [("adjust", 0, 1, None, None)]),
        ("post", [("reject", 16)]),
    ],
    policy="forbid",
    as_agent=False,
)
@example(  # the same in one batch: the earning approved, then its reject refused, the take-back left pending
    batches=[
        ("post", [("adjust", 0, 1, None, None), ("earn", 0, 1, None, True), ("adjust", 0, 1, None, None)]),
        ("take_back", 16, 1),
        ("post", [("approve", 4), ("reject", 4)]),
    ],
    policy="forbid",
    as_agent=False,
)
def test_bulk_and_single_give_identical_ledgers(batches, policy, as_agent):
    TierFactory(name="Bronze", threshold=0)
    TierFactory(name="Silver", threshold=500)
    TierFactory(name="Gold", threshold=2000)
    ProgramSettings.objects.update_or_create(
        pk=1, defaults={"support_agent_limit": 600, "support_agent_daily_limit": 2500}
    )
    agent = None
    if as_agent:
        from tests.conftest import in_role

        agent = in_role("eq-agent", "Support agent")
    outcomes = []
    for single in (True, False):
        with transaction.atomic():
            sid = transaction.savepoint()
            outcomes.append(_one_side(batches, policy, agent, single))
            transaction.savepoint_rollback(sid)
    (single_state, single_refusals), (bulk_state, bulk_refusals) = outcomes
    assert bulk_state == single_state
    assert bulk_refusals == single_refusals


@pytest.mark.django_db
def test_bulk_reports_refusals_by_row_and_applies_the_rest(tiers):
    members = [member_create(email=f"r{i}@eq.example") for i in range(3)]
    result = entries_post_bulk(
        postings=[
            Posting(members[0].pk, 100, "a", idempotency_key="a"),
            Posting(members[0].pk, -500, "b"),
            Posting(members[1].pk, 700, "c"),
            Posting(members[0].pk, 100, "a again", idempotency_key="a"),
            Posting(members[2].pk, 0, "set to zero", apply_type="set"),
        ],
        actor=SYSTEM,
        source="import",
        policy="forbid",
    )
    assert result.posted == 2 and result.already_applied == 1 and result.nothing_to_do == 1
    assert result.refused == [(1, "Cannot take 500 points from r0@eq.example: only 100 are available.")]
    assert (result.points_credited, result.points_debited, result.members_touched) == (800, 0, 2)
    members[1].refresh_from_db()
    assert members[1].tier.name == "Silver"


@pytest.mark.django_db
def test_bulk_again_with_the_same_keys_applies_nothing(tiers):
    members = [member_create(email=f"again{i}@eq.example") for i in range(3)]
    postings = [Posting(m.pk, 50, "row", idempotency_key=f"file:{m.pk}") for m in members]
    assert entries_post_bulk(postings=postings, actor=SYSTEM, source="import").posted == 3
    second = entries_post_bulk(postings=postings, actor=SYSTEM, source="import")
    assert (second.posted, second.already_applied) == (0, 3)
    assert LedgerEntry.objects.count() == 3


@pytest.mark.django_db
def test_an_entry_moved_twice_in_one_batch_moves_once(tiers):
    ann = member_create(email="twice@eq.example")
    pending = points_earn(
        member=ann, points=50, reason="order", actor=SYSTEM, source="order", hold_until=_hold(True)
    ).entry
    result = entries_post_bulk(
        postings=[Move(pending.pk, ACTIVATE, "ok"), Move(pending.pk, REJECT, "no")], actor=SYSTEM, source="admin"
    )
    assert result.refused == [(1, f"Entry #{pending.pk} is active, not pending.")]
    ann.refresh_from_db()
    assert (ann.available_points, ann.pending_points) == (50, 0)


def test_an_earning_rejected_twice_in_one_batch_takes_its_pending_take_back_once(tiers):
    """Found on PostgreSQL: the take-back of an earning rejected twice was staged twice and the batch failed."""
    ann = member_create(email="rejected-twice@eq.example")
    earning = points_earn(
        member=ann, points=80, reason="order", actor=SYSTEM, source="order", hold_until=_hold(True)
    ).entry
    entry_take_back(entry=earning, points=30, reason="refund", actor=SYSTEM, idempotency_key=None)
    result = entries_post_bulk(
        postings=[Move(earning.pk, REJECT, "fraud"), Move(earning.pk, REJECT, "fraud again")],
        actor=SYSTEM,
        source="admin",
    )
    assert result.refused == [(1, f"Entry #{earning.pk} is rejected, not pending.")]
    take_back = LedgerEntry.objects.get(takes_back=earning)
    assert take_back.status == EntryStatus.REJECTED
    ann.refresh_from_db()
    assert (ann.available_points, ann.pending_points) == (0, 0)


@pytest.mark.django_db
def test_postings_of_two_queries_whose_order_interleaves_get_ids_in_posting_order(tiers):
    """Each source of a call draws ids as it loads; a second query whose postings fall between the first's must not
    keep the later ids: the ledger reads in posting order, as if posted one by one."""
    ann = member_create(email="interleaved@eq.example")

    def query(seqs):
        rows = " UNION ALL ".join(
            f"SELECT {seq} AS seq, {ann.pk} AS member_id, {seq} AS points, 'row {seq}' AS reason, "
            "NULL AS idempotency_key, 'active' AS status, NULL AS hold_until, NULL AS earn_rule_id"
            for seq in seqs
        )
        return PostingsQuery(sql=rows, params=[], kind=EntryKind.ADJUSTMENT)

    result = entries_post_bulk(queries=[query([3, 1]), query([4, 2])], actor=SYSTEM, source="import")
    assert result.posted == 4
    assert list(LedgerEntry.objects.order_by("id").values_list("reason", flat=True)) == [
        "row 1",
        "row 2",
        "row 3",
        "row 4",
    ]
    assert [b.through for b in PointsBatch.objects.filter(member=ann).order_by("id")] == [1, 3, 6, 10]


@pytest.mark.django_db
def test_a_query_whose_rows_come_out_of_order_posts_them_in_posting_order(tiers):
    """One source: its rows load sorted by seq and draw their ids so (no check follows), whatever order the SELECT
    yields them in."""
    ann = member_create(email="one-source@eq.example")
    rows = " UNION ALL ".join(
        f"SELECT {seq} AS seq, {ann.pk} AS member_id, {seq} AS points, 'row {seq}' AS reason, "
        "NULL AS idempotency_key, 'active' AS status, NULL AS hold_until, NULL AS earn_rule_id"
        for seq in (5, 2, 4, 1, 3)
    )
    query = PostingsQuery(sql=rows, params=[], kind=EntryKind.ADJUSTMENT)
    assert entries_post_bulk(queries=[query], actor=SYSTEM, source="import").posted == 5
    reasons = list(LedgerEntry.objects.order_by("id").values_list("reason", flat=True))
    assert reasons == [f"row {seq}" for seq in range(1, 6)]
    assert [b.through for b in PointsBatch.objects.filter(member=ann).order_by("id")] == [1, 3, 6, 10, 15]
