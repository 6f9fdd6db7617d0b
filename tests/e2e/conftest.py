"""Browser tests: Playwright for Python driving Debian's chromium against pytest-django's live server.

`playwright install` is not used: the browser is the system's /usr/bin/chromium (installed by .ci/run).
Screenshots of each finished step go to test-artifacts/e2e/ (git-ignored).
"""

import importlib
import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls there unless told it is fine.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
PASSWORD = "pass-for-tests-1"


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def shot():
    """Save a screenshot of a finished step: shot(page, "agent-01-adjusted")."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page, name):
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def roles(transactional_db):
    """The roles as the data migration makes them (a live-server test's database is flushed between tests)."""
    from django.contrib.auth.models import Group, Permission

    roles = importlib.import_module("accounts.migrations.0002_roles")
    agent, _ = Group.objects.get_or_create(name=roles.SUPPORT_AGENT)
    for app_label, codename in roles.AGENT_PERMISSIONS:
        agent.permissions.add(*Permission.objects.filter(content_type__app_label=app_label, codename=codename))
    manager, _ = Group.objects.get_or_create(name=roles.PROGRAM_MANAGER)
    manager.permissions.add(*Permission.objects.filter(content_type__app_label__in=roles.MANAGER_APPS))
    return {"agent": agent, "manager": manager}


def sign_in(page, live_server, username):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
