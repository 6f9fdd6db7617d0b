import pytest


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Uploads and error files go to the test's own directory."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT
