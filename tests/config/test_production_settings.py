"""Production-safe settings: no start-up without a key of its own, `check --deploy` clean with the README's
production variables, and failed logins limited per user name and address (django-axes), unlocked in the admin."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from axes.models import AccessAttempt

from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]


def _readme_production_env() -> dict[str, str]:
    """The KEY=value lines of the README's production example (the block that starts with `# production .env`)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n# production \.env\n(.*?)```", readme, re.S)
    assert block, "the README shows the production variables"
    pairs = (line.split("=", 1) for line in block.group(1).splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _manage(*args, env: dict, tmp_path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "DEBUG", "SECURE_", "DJANGO_"))}
    clean.update(VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings", **env)
    clean.pop("SESSION_COOKIE_SECURE", None)
    clean.pop("CSRF_COOKIE_SECURE", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_with_the_readmes_production_variables_prints_no_warning(tmp_path):
    env = _readme_production_env()
    env["SECRET_KEY"] = "a-real-key-" + "k7Q9xZ2mP4vL8nR1tW6yB3cF5hJ0sD" * 2  # the README says to set a random one
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/db.sqlite3"
    env.pop("CELERY_BROKER_URL", None)
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize("key", [None, "insecure-local-key-set-SECRET_KEY-in-production", "django-insecure-abc"])
def test_without_a_key_of_its_own_the_site_does_not_start(tmp_path, key):
    env = {"DEBUG": "false", **({"SECRET_KEY": key} if key else {})}
    result = _manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY is not set (or is the public default)" in result.stderr


def test_debug_on_a_developers_machine_still_starts_without_a_key(tmp_path):
    assert _manage("check", env={"DEBUG": "true"}, tmp_path=tmp_path).returncode == 0


def test_cookies_are_secure_unless_told_otherwise(tmp_path):
    script = "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"
    result = _manage("shell", "-c", script, env={"SECRET_KEY": "x" * 60}, tmp_path=tmp_path)
    assert result.stdout.split()[-2:] == ["True", "True"], result.stderr


@pytest.mark.django_db
def test_failed_logins_lock_that_user_name_from_that_address_until_unlocked(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    UserFactory(username="ann", password="right-pass-2026")
    UserFactory(username="bob", password="right-pass-2026")

    def login(username, password, address="198.51.100.7"):
        return client.post(
            "/admin/login/", {"username": username, "password": password}, REMOTE_ADDR=address, follow=False
        )

    for _ in range(2):
        assert login("ann", "wrong").status_code == 200  # the form again, with its error
    assert login("ann", "wrong").status_code == 429  # the third failure locks
    locked = login("ann", "right-pass-2026")
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    assert login("bob", "right-pass-2026").status_code == 302, "another user from the same address logs in"
    client.logout()
    assert login("ann", "right-pass-2026", address="198.51.100.8").status_code == 302, "same user, other address"
    client.logout()
    # A superuser unlocks it in the admin: Axes › Access attempts, delete the row.
    attempt = AccessAttempt.objects.get(username="ann", ip_address="198.51.100.7")
    admin = UserFactory(username="root", is_superuser=True)
    client.force_login(admin)
    page = client.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})
    assert page.status_code == 302
    client.logout()
    assert login("ann", "right-pass-2026").status_code == 302
