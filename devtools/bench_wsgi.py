"""The WSGI application bench_webhooks serves: config.wsgi's, with devtools.bench_urls as its URLs (the app's own
plus the trivial view whose rate is the webhooks' floor)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

settings.ROOT_URLCONF = "devtools.bench_urls"
application = get_wsgi_application()
