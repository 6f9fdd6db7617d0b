"""`make run`'s web process serves a styled admin: static files come from WhiteNoise with DEBUG off, and the
address follows WEB_PORT. The Procfile's own web command is started, after `collectstatic` as `make run` runs it."""

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def make_run_web(tmp_path):
    """The web line of the Procfile with DEBUG off, its own key and a WEB_PORT other than 8000."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "DJANGO_SETTINGS"))}
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3",
        STATIC_ROOT=str(tmp_path / "static"),
        WEB_PORT=str(port),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 300}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], check=True, **run)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], check=True, **run)
    web = re.search(r"^web: (.*)$", (ROOT / "Procfile").read_text(), re.M).group(1)
    log = open(tmp_path / "web.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["bash", "-c", f"exec {web}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "web.log").read_text()
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_the_admin_of_make_run_is_styled(make_run_web, page, shot):
    stylesheets = []
    page.on("response", lambda r: stylesheets.append((r.url, r.status)) if r.url.endswith(".css") else None)
    page.goto(f"{make_run_web}/admin/login/")
    assert any(url.endswith("/static/admin/css/base.css") and status == 200 for url, status in stylesheets), stylesheets
    header = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
    assert header not in ("rgba(0, 0, 0, 0)", "transparent"), "the admin's stylesheet applies"
    shot(page, "make-run-login-styled")
