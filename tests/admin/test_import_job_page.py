"""The import job page: links between uploads of one file point the right way; a running job's page polls."""

import pytest

from imports.models import ImportStatus
from imports.services.jobs import import_job_start_apply
from tests.factories import ManagerFactory, MemberFactory
from tests.imports.helpers import applied, checked, upload

pytestmark = pytest.mark.django_db
URL = "/admin/imports/importjob/"
FILE = "email,points\nann@shop.example,6\n"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def manager_client(client, tiers):
    client.force_login(ManagerFactory())
    MemberFactory(email="ann@shop.example")
    return client


def test_a_reupload_names_the_earlier_job_and_the_earlier_job_names_the_later_ones(manager_client):
    first = applied(FILE)
    second = checked(FILE)
    third = checked(FILE)
    first_page = manager_client.get(f"{URL}{first.pk}/change/").content.decode()
    assert "uploaded before" not in first_page, "the first upload was not uploaded before"
    assert "This file was uploaded again as" in first_page
    assert f'href="{URL}{second.pk}/change/" class="later-upload">job {second.pk}</a>' in first_page
    assert f'href="{URL}{third.pk}/change/" class="later-upload">job {third.pk}</a>' in first_page
    third_page = manager_client.get(f"{URL}{third.pk}/change/").content.decode()
    assert f"This file was uploaded before as job {second.pk} " in third_page
    assert "uploaded again" not in third_page


def test_a_running_jobs_page_polls_its_status_from_its_own_block(manager_client):
    job = checked(FILE)
    assert import_job_start_apply(job=job)
    html = manager_client.get(f"{URL}{job.pk}/change/").content.decode()
    # The body's class list holds "import-job" too: the script must find the job's block by its id.
    assert (
        f'<div id="import-job" data-status-url="{URL}{job.pk}/status/" data-running="1" data-status="applying">' in html
    )
    assert 'document.getElementById("import-job")' in html and 'querySelector(".import-job")' not in html
    assert manager_client.get(f"{URL}{job.pk}/status/").json()["status"] == ImportStatus.APPLYING


def test_a_fresh_uploads_page_polls_until_its_check_is_done(manager_client):
    job = upload(FILE)
    html = manager_client.get(f"{URL}{job.pk}/change/").content.decode()
    assert 'data-running="1" data-status="uploaded"' in html
