"""Every refusal in the admin is the admin's own page, naming the permission that was missing and who has it."""

import pytest
from django.contrib.auth.models import Group, Permission

from tests.admin.conftest import ENTRIES_URL, MEMBERS_URL, member_with
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def managers(db):
    for name in ("manager-max", "manager-mia"):
        UserFactory(username=name).groups.add(Group.objects.get(name="Program manager"))


def refusal(response) -> str:
    assert response.status_code == 403
    html = response.content.decode()
    assert 'id="site-name"' in html and "loyalty/back_office.css" in html, "the admin's styled page, not a bare 403"
    return html


def test_saving_the_settings_without_the_permission_names_it_and_the_managers(agent_client, managers):
    html = refusal(agent_client.post("/admin/loyalty/programsettings/1/change/", {"program_name": "Hacked"}))
    assert "It needs the permission “Can change program settings”, which you do not have." in html
    assert "Who has it: the Program manager role — manager-max, manager-mia." in html


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("/admin/loyalty/groupaction/", "Can view group action"),  # Django's own list page
        ("/admin/imports/importjob/add/", "Can add CSV import"),  # an area's upload page
        ("/admin/loyalty/customergroup/refresh-rfm/", "Can change customer group"),  # a button (POST)
        ("/admin/imports/backfillrun/add/", "Can run and undo Reward past actions"),
    ],
)
def test_each_kind_of_refusal_names_its_permission(agent_client, managers, url, label):
    response = agent_client.post(url) if "refresh" in url else agent_client.get(url)
    assert f"It needs the permission “{label}”" in refusal(response)


def test_a_member_action_refused_by_role_names_the_support_agent_role_too(client, managers):
    viewer = UserFactory(username="viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_member"))
    client.force_login(viewer)
    ann = member_with(100, email="ann@shop.example")
    html = refusal(client.get(f"{MEMBERS_URL}{ann.pk}/adjust-points/"))
    assert "“Can adjust points (up to the support-agent limit)”" in html
    assert "the roles Program manager, Support agent" in html


def test_a_page_the_staff_member_may_see_is_not_refused(agent_client):
    assert agent_client.get(ENTRIES_URL).status_code == 200
