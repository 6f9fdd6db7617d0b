"""A failed nightly ledger check is shown where program managers look first: the admin index and the settings page."""

import pytest

from loyalty.models import ProgramSettings

pytestmark = pytest.mark.django_db


def test_failed_check_shows_on_the_admin_index_and_settings_page(client, manager):
    ProgramSettings.load()
    ProgramSettings.objects.filter(pk=1).update(last_reconcile_ok=False, last_reconcile_report="member #1 ...")
    client.force_login(manager)
    index = client.get("/admin/").content.decode()
    settings_page = client.get("/admin/loyalty/programsettings/1/change/").content.decode()
    for page in (index, settings_page):
        assert "found differences between members' balances and the ledger" in page


def test_clean_check_shows_no_warning(client, manager):
    ProgramSettings.load()
    ProgramSettings.objects.filter(pk=1).update(last_reconcile_ok=True)
    client.force_login(manager)
    for url in ("/admin/", "/admin/loyalty/programsettings/1/change/"):
        assert "found differences between members" not in client.get(url).content.decode()
