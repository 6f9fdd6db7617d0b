"""The imports admin: upload, preview, Apply with progress, error file, Undo, permissions."""

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile

from imports.models import ImportJob, ImportStatus
from loyalty.models import Member
from tests.factories import MemberFactory, UserFactory

URL = "/admin/imports/importjob/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def members(tiers):
    return [MemberFactory(email="ann@shop.example"), MemberFactory(email="bob@shop.example")]


@pytest.fixture
def manager_client(client):
    user = UserFactory(username="pm")
    user.groups.add(Group.objects.get(name="Program manager"))
    client.force_login(user)
    return client


def post(client, capture, url, data=None):
    """POST as a browser would, let the queued task run (eagerly), then load the page the browser lands on."""
    with capture(execute=True):
        response = client.post(url, data or {})
    return client.get(response["Location"]) if response.status_code == 302 else response


def upload(client, text, capture, kind="points", name="points.csv"):
    file = SimpleUploadedFile(name, text.encode(), "text/csv")
    return post(client, capture, f"{URL}add/", {"kind": kind, "reason": "Spring", "file": file})


def test_upload_checks_in_the_background_and_shows_the_preview(
    manager_client, members, django_capture_on_commit_callbacks
):
    page = upload(
        manager_client,
        "email,points\nann@shop.example,600\nnobody@shop.example,5\n",
        django_capture_on_commit_callbacks,
    )
    text = page.content.decode()
    assert "The file is being checked" in text
    assert "Rows that will apply" in text and 'id="to-apply">1<' in text
    assert "no member has the email nobody@shop.example" in text
    assert "Apply 1 rows" in text
    job = ImportJob.objects.get()
    assert job.status == ImportStatus.CHECKED and job.created_by.username == "pm"


def test_apply_button_applies_and_shows_the_summary_and_error_file(
    manager_client, members, django_capture_on_commit_callbacks
):
    upload(
        manager_client,
        "email,points\nann@shop.example,600\nnobody@shop.example,5\n",
        django_capture_on_commit_callbacks,
    )
    job = ImportJob.objects.get()
    page = post(manager_client, django_capture_on_commit_callbacks, f"{URL}{job.pk}/apply/")
    text = page.content.decode()
    assert f"Applying import #{job.pk} in the background." in text
    assert "Rows applied" in text and "Download the error file" in text
    assert Member.objects.get(email="ann@shop.example").tier.name == "Silver"
    status = manager_client.get(f"{URL}{job.pk}/status/").json()
    assert status | {"status": "applied", "percent": 100, "applied": 1, "failed": 1, "done": True} == status
    errors = manager_client.get(f"{URL}{job.pk}/errors/")
    body = b"".join(errors.streaming_content).decode("utf-8-sig")
    assert body.splitlines() == [
        "email,points,row,error",
        "nobody@shop.example,5,3,email: no member has the email nobody@shop.example",
    ]


def test_a_repeat_upload_says_it_was_uploaded_before(manager_client, members, django_capture_on_commit_callbacks):
    upload(manager_client, "email,points\nann@shop.example,6\n", django_capture_on_commit_callbacks)
    first = ImportJob.objects.get()
    page = upload(manager_client, "email,points\nann@shop.example,6\n", django_capture_on_commit_callbacks)
    assert f"This file was uploaded before as job {first.pk}" in page.content.decode()


def test_undo_asks_then_reverses(manager_client, members, django_capture_on_commit_callbacks):
    upload(manager_client, "email,points\nann@shop.example,600\n", django_capture_on_commit_callbacks)
    job = ImportJob.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post(f"{URL}{job.pk}/apply/")
    confirm = manager_client.get(f"{URL}{job.pk}/undo/")
    assert f"Reverse the 1 entries import #{job.pk} made (600 points credited" in confirm.content.decode()
    page = post(
        manager_client,
        django_capture_on_commit_callbacks,
        f"{URL}{job.pk}/undo/",
        {"post": "yes", "reason": "wrong file"},
    )
    assert "1 entries reversed; 0 could not be reversed." in page.content.decode()
    ann = Member.objects.get(email="ann@shop.example")
    assert ann.available_points == 0 and ann.entries.filter(reason=f"Undo of CSV import #{job.pk}: wrong file").exists()


def test_bad_uploads_are_refused_on_the_form(manager_client, members, settings, django_capture_on_commit_callbacks):
    page = upload(manager_client, "x", django_capture_on_commit_callbacks, name="points.pdf")
    assert "Upload a .csv or .xlsx file." in page.content.decode()
    settings.IMPORT_MAX_UPLOAD_MB = 0
    page = upload(manager_client, "email,points\n", django_capture_on_commit_callbacks)
    assert "the largest file accepted is 0 MB" in page.content.decode()
    assert not ImportJob.objects.exists()


def test_support_agents_cannot_upload_or_apply(client, members, agent):
    client.force_login(agent)
    assert client.get(f"{URL}add/").status_code == 403
    assert client.post(f"{URL}1/apply/").status_code == 403


@pytest.mark.parametrize("address", ["abc/change/", "1/status.json/change/", "999999/change/"])
def test_a_mistyped_job_address_is_not_found_not_a_server_error(manager_client, address):
    response = manager_client.get(f"/admin/imports/importjob/{address}", follow=True)
    assert response.status_code == 404
