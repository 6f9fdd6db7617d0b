"""Eight agents at once on five shared members: no lost update, no deadlock, no balance below zero under "forbid"."""

import random
import threading

import pytest
from django.db import close_old_connections, connection

from loyalty.errors import LoyaltyError
from loyalty.models import LedgerEntry, Member
from loyalty.selectors import ledger_differences
from loyalty.services import entry_reverse, points_adjust, reward_give
from tests.factories import ManagerFactory, MemberFactory, RewardFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS, OPS_PER_THREAD = 8, 250


def _agent_work(seed, member_ids, reward, actor, errors, refusals):
    rng = random.Random(seed)
    credited = []
    try:
        for _ in range(OPS_PER_THREAD):
            roll = rng.random()
            member_id = rng.choice(member_ids)
            try:
                if roll < 0.45:
                    credited.append(
                        points_adjust(member=member_id, points=rng.randint(1, 80), reason="credit", actor=actor).entry
                    )
                elif roll < 0.75:
                    points_adjust(member=member_id, points=-rng.randint(1, 120), reason="debit", actor=actor)
                elif roll < 0.9 and credited:
                    entry_reverse(entry=credited.pop(rng.randrange(len(credited))), reason="reverse", actor=actor)
                else:
                    reward_give(member=member_id, reward=reward, deduct_points=True, actor=actor)
            except LoyaltyError:
                refusals.append(1)
    except Exception as exc:  # a deadlock or a lost lock would land here
        errors.append(exc)
    finally:
        close_old_connections()
        connection.close()


def test_eight_threads_against_five_members_keep_the_ledger_exact(tiers):
    actor = ManagerFactory()
    reward = RewardFactory(points_cost=60)
    member_ids = [MemberFactory().pk for _ in range(5)]
    errors, refusals = [], []
    threads = [
        threading.Thread(target=_agent_work, args=(seed, member_ids, reward, actor, errors, refusals))
        for seed in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung (deadlock?)"
    assert errors == []
    assert ledger_differences() == []
    for member in Member.objects.filter(pk__in=member_ids):
        assert member.available_points >= 0
        entries = LedgerEntry.objects.filter(member=member)
        assert member.available_points == sum(e.points for e in entries if e.status == "active")
    # Each operation posts exactly one entry or is refused with a reason: nothing lost, nothing posted twice.
    assert LedgerEntry.objects.count() == THREADS * OPS_PER_THREAD - len(refusals)
    assert len(refusals) < THREADS * OPS_PER_THREAD // 2


def test_the_same_adjustment_sent_by_eight_agents_at_once_posts_once(tiers):
    """Eight sessions post one keyed adjustment (a double-clicked form, say) at the same moment: one entry, seven
    "already applied", whichever of the ledger's paths each session took."""
    actor = ManagerFactory()
    member_id = MemberFactory().pk
    barrier = threading.Barrier(THREADS)
    results, errors = [], []

    def agent():
        try:
            barrier.wait(timeout=30)
            results.append(
                points_adjust(member=member_id, points=75, reason="goodwill", actor=actor, idempotency_key="form:1")
            )
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=agent) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(r.already_applied for r in results) == [False] + [True] * (THREADS - 1)
    assert LedgerEntry.objects.filter(idempotency_key="form:1").count() == 1
    assert Member.objects.get(pk=member_id).available_points == 75
    assert ledger_differences() == []


def test_a_credit_waiting_on_a_shortfall_under_the_same_key_is_already_applied(tiers):
    """Session A records a shortfall under key K (cap policy, nothing available) and has not committed; session B
    posts a credit with key K for the same member and waits for the lock. Once A commits, B finds K applied."""
    from django.db import transaction

    actor = ManagerFactory()
    member_id = MemberFactory().pk
    holding, release = threading.Event(), threading.Event()
    results, errors = {}, []

    def session_a():
        try:
            with transaction.atomic():
                results["a"] = points_adjust(
                    member=member_id, points=-50, reason="cap", actor=actor, idempotency_key="K", policy="cap"
                )
                holding.set()
                release.wait(timeout=30)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    def session_b():
        try:
            holding.wait(timeout=30)
            results["b"] = points_adjust(member=member_id, points=10, reason="credit", actor=actor, idempotency_key="K")
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    a, b = threading.Thread(target=session_a), threading.Thread(target=session_b)
    a.start()
    b.start()
    holding.wait(timeout=30)
    b.join(timeout=1)  # B is waiting on the member's lock
    assert b.is_alive()
    release.set()
    a.join(timeout=30)
    b.join(timeout=30)
    assert errors == []
    assert results["a"].shortfall == 50 and results["a"].entry is None
    assert results["b"].already_applied
    assert not LedgerEntry.objects.filter(idempotency_key="K").exists()
    assert Member.objects.get(pk=member_id).available_points == 0
    assert ledger_differences() == []
