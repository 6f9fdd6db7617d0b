"""Real parts: a `celery worker` process on Redis, working on the test database that pytest-django created.

Each test run uses its own queue name, so runs sharing one Redis never take each other's tasks.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """A `celery worker` in its own process group, so SIGKILL reaches the pool's children too."""

    def __init__(self, env: dict, log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.proc = None
        self.starts = 0

    def start(self, timeout: float = 60) -> None:
        self.starts += 1
        self.log_path = self.log_dir / f"worker-{self.starts}.log"
        log = open(self.log_path, "w")  # noqa: SIM115 - closed when the process ends
        cmd = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "--concurrency=1"]
        cmd += ["-Q", self.env["CELERY_TASK_DEFAULT_QUEUE"], "--without-gossip", "--without-mingle"]
        cmd += ["--without-heartbeat", "-n", f"test-{uuid.uuid4().hex[:8]}@%h"]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.log_path.read_text()}")
            if " ready." in self.log_path.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"celery worker not ready after {timeout}s:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL the worker and its pool: what a crashed machine or an OOM kill looks like."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text() if self.proc else ""


def _database_url() -> str:
    db = connection.settings_dict
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """Start a real worker on Redis for this test; tasks sent by the test go to its own queue."""
    from config.celery import app

    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis"):
        pytest.fail(f"the integration tests need Redis as the broker (CELERY_BROKER_URL), not {broker!r}")
    redis.Redis.from_url(broker, socket_connect_timeout=3).ping()  # fails the test loudly when Redis is down
    queue = f"test-{uuid.uuid4().hex[:10]}"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=_database_url(),
        CELERY_BROKER_URL=broker,
        CELERY_TASK_DEFAULT_QUEUE=queue,
        CELERY_TASK_ALWAYS_EAGER="false",
        VAR_DIR=str(tmp_path / "var"),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        PYTHONUNBUFFERED="1",
    )
    old = app.conf.task_always_eager, app.conf.task_default_queue, app.conf.broker_url
    app.conf.task_always_eager = False
    app.conf.task_default_queue = queue
    worker = WorkerProcess(env, tmp_path)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        app.conf.task_always_eager, app.conf.task_default_queue, app.conf.broker_url = old
        prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
        redis.Redis.from_url(broker).delete(prefix + queue)


def wait_for(predicate, *, timeout: float = 120, interval: float = 0.2, what: str = "condition"):
    """Poll until predicate() is truthy; fail with `what` after the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")
