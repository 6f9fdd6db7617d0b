"""Shared fixtures. After every test that wrote to the database, the ledger must reconcile."""

import pytest
from django.db import connection

from loyalty.selectors import ledger_differences
from tests.factories import ManagerFactory, TierFactory, UserFactory


def pytest_configure(config):
    # Unit tests run tasks in-process; the integration tests start a real worker and turn this off.
    from config.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


def pytest_report_header(config):
    from django.conf import settings

    return f"database: {settings.DATABASES['default']['ENGINE']} {settings.DATABASES['default'].get('NAME')}"


def _uses_database(item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    return bool(item.get_closest_marker("django_db") or names & {"db", "transactional_db", "live_server"})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Every test that touched the database ends with a clean reconcile_ledger (checked before the test's data goes)."""
    result = yield
    if _uses_database(item):
        differences = ledger_differences()
        assert not differences, "the ledger does not reconcile: " + "; ".join(map(str, differences))
    return result


@pytest.fixture(autouse=True)
def _store_time_zone_read_afresh():
    """Each test reads the store's time zone from its own database (the process keeps it for a minute)."""
    from loyalty.timezones import forget_store_timezone

    forget_store_timezone()
    yield
    forget_store_timezone()


@pytest.fixture
def tiers(db):
    return [
        TierFactory(name="Bronze", threshold=0),
        TierFactory(name="Silver", threshold=500),
        TierFactory(name="Gold", threshold=2000),
    ]


@pytest.fixture
def manager(db):
    return ManagerFactory()


@pytest.fixture
def agent(db):
    from django.contrib.auth.models import Group

    user = UserFactory(username="agent")
    user.groups.add(Group.objects.get(name="Support agent"))
    return user


@pytest.fixture
def system():
    from loyalty.actors import SystemActor

    return SystemActor("tests")


def pytest_collection_modifyitems(config, items):
    """Tests of PostgreSQL-only behaviour (triggers, row locks, a real worker on Redis) run in the PostgreSQL pass
    of `make test`; on SQLite they are deselected, and the run says so."""
    if connection.vendor == "postgresql":
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("postgres") or item.get_closest_marker("integration") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def in_role(username, role):
    from django.contrib.auth.models import Group

    user = UserFactory(username=username)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def support_agent(db):
    return in_role("agent-ann", "Support agent")


@pytest.fixture
def program_manager(db):
    return in_role("manager-max", "Program manager")


@pytest.fixture
def agent_client(client, support_agent):
    client.force_login(support_agent)
    return client


@pytest.fixture
def manager_client(client, program_manager):
    client.force_login(program_manager)
    return client
