"""The import job page in a browser against a real Celery worker: the check, then an apply in chunks, and the
progress bar moving in place while the worker writes its progress, with no reload until the job ends (issue 14, 4).

Real parts: PostgreSQL, Redis, a `celery worker` with 5,000-row chunks (tests.imports.worker_settings), the live
server, chromium.
"""

import pytest

from imports.models import ImportJob, ImportStatus
from tests.e2e.conftest import sign_in
from tests.factories import MemberFactory, UserFactory
from tests.integration.conftest import celery_worker_process  # noqa: F401 - the fixture, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROWS = 60_000
MEMBERS = 500


@pytest.fixture
def worker(celery_worker_process):  # noqa: F811
    celery_worker_process.stop()
    celery_worker_process.env.update(DJANGO_SETTINGS_MODULE="tests.imports.worker_settings")
    celery_worker_process.start()
    return celery_worker_process


def points_file() -> bytes:
    lines = ["email,points,reason"] + [f"live{i % MEMBERS}@shop.example,1,Live test" for i in range(ROWS)]
    return ("\n".join(lines) + "\n").encode()


def test_progress_bar_moves_while_the_worker_applies_without_reloading(page, live_server, roles, worker, shot):
    for i in range(MEMBERS):
        MemberFactory(email=f"live{i}@shop.example")
    UserFactory(username="manager-max").groups.add(roles["manager"])
    sign_in(page, live_server, "manager-max")
    page.goto(f"{live_server.url}/admin/imports/importjob/add/")
    page.select_option("#id_kind", "points")
    page.fill("#id_reason", "Live progress")
    page.set_input_files("#id_file", files=[{"name": "live.csv", "mimeType": "text/csv", "buffer": points_file()}])
    page.click("input[type=submit]")
    # The upload's page waits for the worker's check and shows the preview by itself.
    page.wait_for_selector("#preview", timeout=120_000)
    shot(page, "item4-10-live-checked-by-the-worker")

    page.click("#import-job input.default")
    page.wait_for_selector("#job-progress")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    page.wait_for_function(
        "(() => { const v = document.getElementById('job-progress').value; return v > 0 && v < 100; })()",
        timeout=120_000,
        polling=100,
    )
    first = page.evaluate("document.getElementById('job-progress').value")
    shot(page, "item4-11-live-progress-moving")
    page.wait_for_function(
        f"document.getElementById('job-progress') && document.getElementById('job-progress').value > {first}",
        timeout=120_000,
        polling=100,
    )
    assert page.evaluate("window.sameDocument === true"), "the bar moved in place, without a reload"
    shot(page, "item4-12-live-progress-moved-again")

    page.wait_for_selector("#summary", timeout=300_000)  # the job ended: the page reloaded once, by itself
    assert page.inner_text("#job-status") == "Applied"
    assert ImportJob.objects.get().status == ImportStatus.APPLIED
    shot(page, "item4-13-live-applied")
