"""Turning expiry on shows first what the next run would expire, and applies when confirmed (issue 15)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.actors import SystemActor
from loyalty.models import PointsBatch, ProgramSettings
from loyalty.services import points_earn
from loyalty.services.members import member_create

pytestmark = pytest.mark.django_db


def _form_data(client, url):
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, bool)}
    started = ProgramSettings.load().program_started_at
    data.update(program_started_at_0=f"{started:%Y-%m-%d}", program_started_at_1=f"{started:%H:%M:%S}")
    return data


def test_changing_the_policy_shows_its_impact_before_it_applies(manager_client, tiers):
    ann = member_create(email="old@example.com")
    entry = points_earn(member=ann, points=250, reason="order", actor=SystemActor("t"), source="order").entry
    PointsBatch.objects.filter(entry=entry).update(earned_at=timezone.now() - timedelta(days=100))
    settings = ProgramSettings.load()
    url = f"/admin/loyalty/programsettings/{settings.pk}/change/"
    data = _form_data(manager_client, url)
    data.update(expiry_policy="after_earning", expiry_period="90", expiry_unit="days")
    page = manager_client.post(url, data)
    assert page.status_code == 200
    assert "would expire 250 points of 1 members" in page.content.decode()
    settings.refresh_from_db()
    assert settings.expiry_policy == "none"
    data["expiry_confirmed"] = "on"
    done = manager_client.post(url, data)
    assert done.status_code == 302
    settings.refresh_from_db()
    assert (settings.expiry_policy, settings.expiry_period, settings.expiry_unit) == ("after_earning", 90, "days")
    page = manager_client.get(url).content.decode()
    assert "250 points of 1 members on" in page


def test_other_changes_need_no_confirmation(manager_client):
    settings = ProgramSettings.load()
    url = f"/admin/loyalty/programsettings/{settings.pk}/change/"
    data = _form_data(manager_client, url)
    data.update(point_value="0.0200")
    assert manager_client.post(url, data).status_code == 302
    settings.refresh_from_db()
    assert str(settings.point_value) == "0.0200"
