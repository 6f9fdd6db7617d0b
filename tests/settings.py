"""Settings of the test suite: the project's own, with a throwaway SECRET_KEY when the environment gives none.

With DEBUG off the project refuses to start without a key of its own (config/settings.py); the tests, and the
worker processes they start (which inherit this environment), get a random one for the run. The tests talk plain
http, as `make run` does, so cookies are not marked Secure here.
"""

import os
import secrets
from pathlib import Path

os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")

from config.settings import *  # noqa: E402, F403

# WhiteNoise looks for collected files at start-up; the suite collects none (the browser test collects its own).
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)  # noqa: F405
