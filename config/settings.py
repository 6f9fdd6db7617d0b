"""One settings module; every knob comes from the environment and has a working default.

Defaults give a laptop setup: SQLite in var/, a Celery broker on the filesystem (no server), DEBUG off unless asked.
Production sets DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis); see the README.

With DEBUG off the site refuses to start without a SECRET_KEY of its own: the public default key would let anyone
forge sessions and password-reset links. `make run` creates a random local key once in var/secret_key.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
INSECURE_SECRET_KEY = "insecure-local-key-set-SECRET_KEY-in-production"
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY or SECRET_KEY == INSECURE_SECRET_KEY or SECRET_KEY.startswith("django-insecure-"):
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set (or is the public default). Set it in the environment or in .env to a long random "
            "value, e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(50))'. "
            "(`make run` creates a local one in var/secret_key; DEBUG=true allows the insecure default on a "
            "developer's machine.)"
        )
    SECRET_KEY = INSECURE_SECRET_KEY
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "django_celery_beat",
    "import_export",
    "accounts",
    "tiers",
    "loyalty",
    "imports",
    "webhooks",
]
if env.bool("DEVTOOLS", default=True):
    INSTALLED_APPS.append("devtools")  # the demo program and the benchmarks: leave out in production

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS and scripts) from the same process, with or without DEBUG.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "loyalty.middleware.StoreTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it answers a locked-out login.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock at BEGIN, so two writers queue instead of failing on a lock upgrade;
    # WAL lets the admin read while a worker writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    # Imports, backfills and bulk posts stage their rows in temporary tables. PostgreSQL keeps a session's temporary
    # pages in temp_buffers (8MB by default) and spills the rest through the operating system; a million staged rows
    # are a few hundred MB. A session takes the memory as it uses it and keeps it until its connection closes; the
    # value can only be set before the session's first temporary table, hence at connection time. Empty leaves the
    # server's value.
    if temp_buffers := env.str("DATABASE_TEMP_BUFFERS", default="256MB"):
        options = DATABASES["default"].setdefault("OPTIONS", {})
        # First, so that a temp_buffers given in DATABASE_URL's own options (which come after) wins.
        options["options"] = f"-c temp_buffers={temp_buffers} {options.get('options', '')}".strip()
DATABASES["default"]["ATOMIC_REQUESTS"] = False

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
# django-axes first: it refuses a locked-out login before the password is checked.
# Last: asked only about permissions the others refused, it notes them for the 403 page (accounts/permissions.py).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "accounts.permissions.RefusalRecorder",
]

# Failed logins (django-axes): after AXES_FAILURE_LIMIT failures for one user name from one address, that pair is
# locked out for AXES_COOLOFF_HOURS; a superuser unlocks it at once by deleting its row under Axes › Access attempts.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Behind a reverse proxy the client's address is in X-Forwarded-For: set the number of proxies in front.
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0) or None
if AXES_IPWARE_PROXY_COUNT:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# The staff's locale: every page shows dates, times and amounts in its formats (en-gb: "30 Nov 2026, 2:30 p.m.").
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="en-us")
# The default of the program's store time zone (Program settings), which decides the program's day boundaries.
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies (gzip) served by WhiteNoise; no manifest, so a page renders before collectstatic has run.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"

LOGIN_URL = "admin:login"

# Celery: a broker that needs no server by default (kombu's filesystem transport under var/broker).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
    }
else:
    # Above the longest task's hard time limit, so Redis never hands a running task to a second worker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=7200)}
    if key_prefix := env.str("CELERY_KEY_PREFIX", default=""):
        # Every key kombu writes (queues, bindings, unacknowledged messages) starts with it: installations (or test
        # runs, see bin/test-both) sharing one Redis database never see each other's.
        CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = key_prefix
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3600)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Store webhooks (see the README's "Connecting a store").
SHOPIFY_WEBHOOK_SECRET = env.str("SHOPIFY_WEBHOOK_SECRET", default="")
WOOCOMMERCE_WEBHOOK_SECRET = env.str("WOOCOMMERCE_WEBHOOK_SECRET", default="")
# The largest webhook body accepted (a big Shopify order is a few hundred kilobytes); larger ones get 413.
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=2 * 1024 * 1024)

# CSV uploads: the largest file accepted, in megabytes.
IMPORT_MAX_UPLOAD_MB = env.int("IMPORT_MAX_UPLOAD_MB", default=200)
# An .xlsx upload is refused when its parts unpack to more than this (its sheet is streamed; its shared strings,
# which openpyxl keeps in memory, have their own, smaller cap).
IMPORT_XLSX_MAX_UNPACKED_MB = env.int("IMPORT_XLSX_MAX_UNPACKED_MB", default=500)
IMPORT_XLSX_MAX_SHARED_STRINGS_MB = env.int("IMPORT_XLSX_MAX_SHARED_STRINGS_MB", default=16)
# Background jobs (imports, Reward past actions runs, group actions): a running task writes a heartbeat every
# JOB_HEARTBEAT_SECONDS; the sweep queues a job again whose heartbeat is older than JOB_SILENT_SECONDS, and fails
# it with the reason once its task has started JOB_MAX_STARTS times without finishing.
JOB_HEARTBEAT_SECONDS = env.int("JOB_HEARTBEAT_SECONDS", default=30)
JOB_SILENT_SECONDS = env.int("JOB_SILENT_SECONDS", default=600)
JOB_MAX_STARTS = env.int("JOB_MAX_STARTS", default=5)
# Rows applied per transaction; progress is written between chunks and a resumed apply restarts at a chunk boundary.
IMPORT_CHUNK_ROWS = env.int("IMPORT_CHUNK_ROWS", default=100_000)
# A points or tokens import of more rows than this applies in member ranges of about this many rows, each a Celery task
# of its own (any worker takes it); smaller ones, and members and orders imports, apply in chunks in one task.
IMPORT_RANGE_ROWS = env.int("IMPORT_RANGE_ROWS", default=200_000)
# Reward past actions: member ids per range; each range is a Celery task of its own (any worker takes it).
BACKFILL_RANGE_MEMBERS = env.int("BACKFILL_RANGE_MEMBERS", default=50_000)
# Group actions on more members than this run their ranges of 5,000 members as Celery tasks of their own.
GROUP_ACTION_SPREAD_MEMBERS = env.int("GROUP_ACTION_SPREAD_MEMBERS", default=20_000)
# django-import-export's own views escape cells a spreadsheet would run as formulae (= + - @).
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# HTTPS (see the README's production table). Cookies are Secure unless DEBUG (`make run` serves plain http on
# 127.0.0.1 and turns them off); HSTS, the redirect to https and the proxy's header are set by the environment,
# since a wrong value locks browsers out (HSTS) or loops (a redirect behind a proxy that does not say https).
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if proxy_header := env.list("SECURE_PROXY_SSL_HEADER", default=[]):
    # e.g. HTTP_X_FORWARDED_PROTO,https: the proxy in front says the request came over https.
    SECURE_PROXY_SSL_HEADER = tuple(proxy_header[:2])
