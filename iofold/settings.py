"""iofold settings: one module, every value from the environment with a safe local default.

Unset, iofold runs on a SQLite file and an embedded file-system broker under ``var/``, so a
newcomer needs nothing else. ``DATABASE_URL`` and ``CELERY_BROKER_URL`` switch to PostgreSQL
and Redis. With ``DEBUG=false`` every secret must come from the environment.
"""

import ipaddress
import json
import secrets
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from kombu.transport import TRANSPORT_ALIASES

from iofold.lib.csp import POLICY as CSP_POLICY
from iofold.lib.env import (
    BadSetting,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_secret,
    env_str,
    local_secret,
    report_bad_settings_in_one_line,
)
from iofold.lib.logcontext import log_uncaught_exceptions

report_bad_settings_in_one_line()
# A crash of beat or a worker: one log record, not one per piece Celery's stderr proxy sees.
log_uncaught_exceptions()

BASE_DIR = Path(__file__).resolve().parent.parent
# Local state for development: SQLite file, broker folder, generated secrets, emails.
VAR_DIR = Path(env_str("IOFOLD_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", True)


def _dev_secret(name: str, filename: str, make) -> str:
    """Return a secret from the environment, or in development one kept in var/."""
    value = env_secret(name)
    if value:
        return value
    if not DEBUG:
        raise BadSetting(f"{name} must be set when DEBUG is false")
    return local_secret(VAR_DIR / filename, make)


SECRET_KEY = _dev_secret("SECRET_KEY", "secret_key", lambda: secrets.token_urlsafe(50))
# MultiFernet keys: the first encrypts, all decrypt (rotation).
IOFOLD_ENCRYPTION_KEYS = [
    key.strip()
    for key in _dev_secret(
        "IOFOLD_ENCRYPTION_KEYS", "encryption_keys", lambda: Fernet.generate_key().decode()
    ).split(",")
    if key.strip()
]
for _number, _key in enumerate(IOFOLD_ENCRYPTION_KEYS, 1):
    try:
        Fernet(_key)
    except ValueError:
        # The key itself is a secret: name its place in the list, never its value.
        raise BadSetting(
            f"IOFOLD_ENCRYPTION_KEYS: key {_number} of {len(IOFOLD_ENCRYPTION_KEYS)} is not "
            "a Fernet key (32 url-safe base64-encoded bytes)"
        ) from None

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not ALLOWED_HOSTS:
    # Django would answer every request 400 and say why only in the log.
    raise BadSetting("ALLOWED_HOSTS must name this server's host names when DEBUG is false")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Absolute base of links in emails. Unset, links take the scheme and host of the request
# that sends them, so they work on whatever address and port the app is reached at.
SITE_URL = env_str("SITE_URL", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI, pinned and served locally
    "django_htmx",
    "django_celery_beat",
    "accounts",
    "workspaces",
    "integrations",
    "traces",
    "evals",
]

MIDDLEWARE = [
    # First, so it times everything below and every log line of the request has its id.
    "iofold.monitoring.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # An API body sent chunked, which Django would read as empty: 411 before anything else.
    "iofold.lib.bodies.LengthRequiredMiddleware",
    # Content-Security-Policy on every response: SECURE_CSP below.
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Django's, with an API address missing its slash sent on by 308 (POST stays a POST).
    "iofold.lib.slashes.ApiAppendSlashMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Everything needs a login unless a view opts out (auth pages, /healthz, the API,
    # which authenticates itself).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # A hand-opened GET of a POST-only address: a page saying it acts, not a blank 405.
    "iofold.lib.action_pages.ActionPageMiddleware",
    # A signed-out htmx request: the sign-in page whole, not swapped into a fragment.
    "iofold.lib.signed_out.SignedOutHtmxMiddleware",
]

ROOT_URLCONF = "iofold.urls"
WSGI_APPLICATION = "iofold.wsgi.application"

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
                "workspaces.context_processors.workspaces",
                "iofold.composition.navigation",
            ],
            # {% url %} remembering the URLs it reversed (a page has 10 to 20 of them).
            # {% scroll_region %}: the attributes of a keyboard-reachable scroll box.
            "builtins": ["iofold.lib.cached_url", "iofold.lib.scroll_region"],
        },
    },
]

try:
    DATABASES = {
        "default": dj_database_url.parse(
            env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
            conn_health_checks=True,
        )
    }
except ValueError:
    # Not the URL itself in the message: it holds the database password.
    raise BadSetting(
        "DATABASE_URL must look like postgres://user:password@host:5432/name"
    ) from None
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # SQLite creates the file but not its folder: without this, a first `migrate` with
    # DEBUG off (no development secret created var/ before it) says "unable to open
    # database file".
    try:
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _where = "DATABASE_URL" if env_str("DATABASE_URL") else "IOFOLD_VAR_DIR"
        raise BadSetting(
            f"{_where}: cannot create the database's folder ({exc.strerror})"
        ) from None
    # WAL lets the web server, worker and beat share one SQLite file without locking out
    # readers; the timeout rides out short write bursts.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Covering indexes INCLUDE columns for PostgreSQL's index-only reads; SQLite keeps the
    # key columns and ignores the rest, which is all the embedded default needs.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"

# django-allauth: email is the login, and it must be verified.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[iofold] "

EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    # Development: each email is a file under var/emails/ (and echoed nowhere else).
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = VAR_DIR / "emails"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "iofold <noreply@localhost>")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Files browsers fetch from the site root (/favicon.ico), served there by WhiteNoise.
WHITENOISE_ROOT = BASE_DIR / "static" / "root"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

CACHES = {
    "default": {
        # Django's Redis backend, minus a client built on every call (iofold/lib/cache.py).
        "BACKEND": "iofold.lib.cache.RedisCache",
        "LOCATION": env_str("CACHE_URL"),
    }
    if env_str("CACHE_URL")
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
# Sessions are read from the cache (Redis in production) and written through to the
# database: every page saves a PostgreSQL query, and a cache flush logs nobody out.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# Production hardening; each can be relaxed by environment behind a TLS proxy.
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # /healthz is probed over plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]

# Same-origin scripts and styles only, nothing inline (iofold/lib/csp.py says why).
SECURE_CSP = CSP_POLICY

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "workspaces.authentication.WorkspaceTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "iofold.api.InlineStylesBrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "iofold.api.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "iofold.api.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "iofold.api.exception_handler",
    # Per token, and per user whatever the credential (a token acts for its creator, so
    # minting tokens does not multiply a user's budget). Rates: IOFOLD_API_THROTTLE_RATES.
    "DEFAULT_THROTTLE_CLASSES": [
        "workspaces.throttles.ApiTokenRateThrottle",
        "workspaces.throttles.ApiUserRateThrottle",
    ],
}
# "N/second|minute|hour|day", or "off"; counted on the shared cache (CACHE_URL), so set
# CACHE_URL in production or each process counts on its own.
IOFOLD_API_THROTTLE_RATES = {
    "token": env_str("IOFOLD_API_RATE_PER_TOKEN", "1200/minute"),
    "user": env_str("IOFOLD_API_RATE_PER_USER", "3000/minute"),
}
# Traces a workspace may push per minute (API, upload, webhooks, OTLP, the Agents SDK
# receiver), counted before anything is stored; 0 turns the limit off. Syncs are not counted.
for _scope, _rate in IOFOLD_API_THROTTLE_RATES.items():
    _num, _, _period = _rate.partition("/")
    if _rate.lower() not in ("off", "none", "0") and not (
        _num.isdigit() and _period[:1] in ("s", "m", "h", "d")
    ):
        raise BadSetting(
            f"IOFOLD_API_RATE_PER_{_scope.upper()} must look like 600/minute or be off"
        )
IOFOLD_INGEST_TRACES_PER_MINUTE = env_int("IOFOLD_INGEST_TRACES_PER_MINUTE", 120_000)
SPECTACULAR_SETTINGS = {
    "TITLE": "iofold API",
    # Swagger UI from the pinned drf-spectacular-sidecar package, served as our own static
    # files: /api/docs/ works offline and loads nothing from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge: it would load an image from validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "DESCRIPTION": "Traces, labels, evals and their executions, scoped to one workspace.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # drf-spectacular's enum hook, then the errors every operation can answer.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "iofold.api.document_common_errors",
    ],
    # Several models have a "status" field with different choices; name each set.
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "evals.models.RunStatus",
        "EvalStatusEnum": "evals.models.Eval.Status",
        "EvalKindEnum": "evals.models.EvalKind",
        "IntegrationKindEnum": "integrations.models.Integration.Kind",
    },
}

# Celery. Unset broker: the file-system transport under var/broker, so a real worker
# consumes tasks with nothing else installed.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
# kombu would fail only when the first task is sent, inside a request.
if CELERY_BROKER_URL.partition("://")[0].partition("+")[0] not in TRANSPORT_ALIASES:
    raise BadSetting("CELERY_BROKER_URL must look like redis://host:6379/0")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    # kombu's file-system transport, with messages renamed into place once written.
    CELERY_BROKER_TRANSPORT = "iofold.lib.fs_broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Redis redelivers an unacknowledged task after this long; it must exceed the
    # longest task time limit or a slow task would run twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 4 * 3600}
CELERY_TASK_ACKS_LATE = (
    True  # a task is removed only after it finishes, so a killed worker loses nothing
)
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # ...and the broker redelivers it
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # long tasks: don't hoard messages other workers could run
CELERY_TASK_IGNORE_RESULT = True  # state lives in our rows (SyncRun, EvalRun), not a result backend
# Celery's Django fixup closes every database connection before and after each task unless
# told to reuse them; each task then waited for a new PostgreSQL backend with cold caches
# (18 ms more to its first answers at load 4). Reused: iofold/celery.py closes them around
# tasks by Django's own rules instead (DATABASE_CONN_MAX_AGE, unusable, left in a
# transaction), as around a web request; the fixup only after this many tasks.
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_SOFT_TIME_LIMIT = env_int(
    "CELERY_TASK_SOFT_TIME_LIMIT", 30 * 60
)  # raise inside the task to clean up
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 35 * 60)  # then kill it
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # Route by name so the three kinds of work scale and fail independently.
    "integrations.tasks.*": {"queue": "sync"},
    # Importing scores reads the same vendors a sync does.
    "traces.tasks.*": {"queue": "sync"},
    "evals.tasks.generate_*": {"queue": "generate"},
    "evals.tasks.*": {"queue": "execute"},
}
CELERY_TASK_ALWAYS_EAGER = False
# The one reaper of all runs, and the conversation sweep, live outside the apps.
CELERY_IMPORTS = ["iofold.reaper", "iofold.pipeline"]
# A running sync, generation or eval run beats its heartbeat this often from a thread, and
# is taken over by another worker once it missed a few: at once when its worker is known
# to be gone (same machine), after this many seconds otherwise (see iofold/lib/runs.py).
IOFOLD_RUN_HEARTBEAT_SECONDS = env_float("IOFOLD_RUN_HEARTBEAT_SECONDS", 5.0)
IOFOLD_RUN_STALE_SECONDS = env_int("IOFOLD_RUN_STALE_SECONDS", 30)
if IOFOLD_RUN_STALE_SECONDS < 3 * IOFOLD_RUN_HEARTBEAT_SECONDS:
    raise BadSetting(
        "IOFOLD_RUN_STALE_SECONDS must cover at least three IOFOLD_RUN_HEARTBEAT_SECONDS"
    )
# A queued eval run over more traces than this is split into chunks of this many, each its
# own task, so any number of workers share it (evals/execution/chunks.py).
IOFOLD_EVAL_CHUNK_TRACES = env_int("IOFOLD_EVAL_CHUNK_TRACES", 5000)
# At most this many chunks of one run are sent to the queue and unfinished at a time; the
# next is sent, at the queue's tail, as one ends: a backfill of many chunks takes turns with
# what other workspaces queued meanwhile instead of holding every worker until it is done.
IOFOLD_EVAL_CHUNKS_IN_FLIGHT = env_int("IOFOLD_EVAL_CHUNKS_IN_FLIGHT", 4)
if IOFOLD_EVAL_CHUNKS_IN_FLIGHT < 1:
    raise BadSetting("IOFOLD_EVAL_CHUNKS_IN_FLIGHT must be at least 1")
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# The sandbox that runs untrusted eval code. The local backend is for development only.
SANDBOX_BACKEND = env_str("SANDBOX_BACKEND", "nsjail")
SANDBOX_ALLOW_LOCAL_BACKEND = env_bool("SANDBOX_ALLOW_LOCAL_BACKEND", False)
SANDBOX_TIMEOUT_PER_TRACE = env_float("SANDBOX_TIMEOUT_PER_TRACE", 5.0)
SANDBOX_MEMORY_MB = env_int("SANDBOX_MEMORY_MB", 256)

# Outbound connections to URLs that workspaces configure (Langfuse hosts, LLM base URLs) go
# only to public addresses in production, so a workspace cannot reach the metadata service,
# the database or Redis (see iofold/lib/outbound.py). Development and tests need loopback.
IOFOLD_ALLOW_PRIVATE_HOSTS = env_bool("IOFOLD_ALLOW_PRIVATE_HOSTS", DEBUG)
# Host names and CIDR ranges allowed even when private, e.g. an on-premises Langfuse.
IOFOLD_PRIVATE_HOSTS_ALLOWLIST = env_list("IOFOLD_PRIVATE_HOSTS_ALLOWLIST")
for _entry in IOFOLD_PRIVATE_HOSTS_ALLOWLIST:
    if "/" in _entry:
        try:
            ipaddress.ip_network(_entry, strict=False)
        except ValueError:
            raise BadSetting(
                f"IOFOLD_PRIVATE_HOSTS_ALLOWLIST: {_entry!r} is not a CIDR range"
            ) from None
# An egress proxy for those connections (HTTP(S)_PROXY are not used for them: they would
# route around the address check). Through it, the proxy connects, so it must enforce
# where connections may go; the check when a URL is saved still applies.
IOFOLD_OUTBOUND_PROXY = env_str("IOFOLD_OUTBOUND_PROXY")

# Eval generation. Unset provider: "anthropic" or "openai" when that key is set, else the
# built-in offline synthesiser. A workspace's settings page overrides all of these.
IOFOLD_LLM_PROVIDER = env_str("IOFOLD_LLM_PROVIDER")
if IOFOLD_LLM_PROVIDER not in ("", "offline", "openai", "anthropic"):
    raise BadSetting("IOFOLD_LLM_PROVIDER must be offline, openai or anthropic")
IOFOLD_LLM_MODEL = env_str("IOFOLD_LLM_MODEL")
OPENAI_API_KEY = env_secret("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
ANTHROPIC_API_KEY = env_secret("ANTHROPIC_API_KEY")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL")
# {"model": {"input": dollars per million tokens, "output": ...}}, merged over the list prices.
try:
    IOFOLD_LLM_PRICES = json.loads(env_str("IOFOLD_LLM_PRICES") or "{}")
except ValueError as exc:
    raise BadSetting(f"IOFOLD_LLM_PRICES is not valid JSON: {exc}") from None
if not isinstance(IOFOLD_LLM_PRICES, dict):
    raise BadSetting("IOFOLD_LLM_PRICES must be a JSON object of model prices")
# Approximate tokens the generation prompt may use (examples are trimmed to fit).
IOFOLD_LLM_TOKEN_BUDGET = env_int("IOFOLD_LLM_TOKEN_BUDGET", 60000)
# judge()/llm() calls from eval code (docs/judges.md): a budget per run, a timeout per
# call and a cap on each answer's length. A workspace's monthly budget is on its
# provider settings.
IOFOLD_JUDGE_MAX_CALLS = env_int("IOFOLD_JUDGE_MAX_CALLS", 5000)
IOFOLD_JUDGE_MAX_TOKENS = env_int("IOFOLD_JUDGE_MAX_TOKENS", 5_000_000)
IOFOLD_JUDGE_MAX_USD = env_float("IOFOLD_JUDGE_MAX_USD", 10.0)
IOFOLD_JUDGE_TIMEOUT_S = env_float("IOFOLD_JUDGE_TIMEOUT_S", 30.0)
IOFOLD_JUDGE_MAX_OUTPUT_TOKENS = env_int("IOFOLD_JUDGE_MAX_OUTPUT_TOKENS", 256)
# An active eval is flagged as drifting when its agreement with labels given after its
# activation falls this far (0.10 = ten points) below its agreement at activation.
IOFOLD_DRIFT_MARGIN = env_float("IOFOLD_DRIFT_MARGIN", 0.10)

# Logs: JSON lines in production (one object per record, with the request's or task's
# id), plain text in development; LOG_FORMAT overrides.
LOG_FORMAT = env_str("LOG_FORMAT", "plain" if DEBUG else "json")
if LOG_FORMAT not in ("plain", "json"):
    raise BadSetting("LOG_FORMAT must be plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "iofold.lib.logcontext.ContextFilter"}},
    "formatters": {
        "plain": {
            "()": "iofold.lib.logcontext.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {
            "()": "iofold.lib.logcontext.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(task_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            # stderr, in every process: stdout is a command's output (export_workspace -
            # writes its archive there). docs/operations.md, "Logs".
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Django's own handlers (a console for DEBUG, runserver's) would write request
        # paths unredacted: its records go to the console handler above instead.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
    },
}

# /metrics (Prometheus): answered to a bearer token equal to IOFOLD_METRICS_TOKEN, or to
# clients in these networks (the direct peer's address: behind a proxy, use the token).
IOFOLD_METRICS_TOKEN = env_secret("IOFOLD_METRICS_TOKEN")
try:
    IOFOLD_METRICS_ALLOWED_NETWORKS = [
        ipaddress.ip_network(entry, strict=False)
        for entry in env_list("IOFOLD_METRICS_ALLOWED_NETWORKS", ["127.0.0.1/32", "::1/128"])
    ]
except ValueError as exc:
    raise BadSetting(f"IOFOLD_METRICS_ALLOWED_NETWORKS: {exc}") from None
# A Celery worker serves its own /metrics on this port (0: none); its pool processes
# share PROMETHEUS_MULTIPROC_DIR, which must then be set.
IOFOLD_WORKER_METRICS_PORT = env_int("IOFOLD_WORKER_METRICS_PORT", 0)

# Errors to Sentry, only when a DSN is given; no personal data is sent.
SENTRY_DSN = env_secret("SENTRY_DSN")
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        environment=env_str("SENTRY_ENVIRONMENT", "development" if DEBUG else "production"),
        traces_sample_rate=env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0),
        send_default_pii=False,
        # A request's body goes with its error report; Sentry's list of fields to blank
        # matches whole names and misses ours (an integration's ``secret_key``, posted by
        # its form and the API).
        event_scrubber=EventScrubber(
            denylist=[*DEFAULT_DENYLIST, "secret_key", "webhook_secret"], recursive=True
        ),
    )

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Tests that hand rows to a real worker process need a test database it can open too.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}

# Global schedules, upserted by name by ``manage.py setup_periodic_tasks`` (run on deploy
# and by bin/run). Per-integration sync schedules are rows the integration services manage.
# A conversation counts as complete after this long without a new turn, unless one of the
# workspace's conversation eval sets sets a shorter or longer idle time.
IOFOLD_CONVERSATION_IDLE_MINUTES = env_int("IOFOLD_CONVERSATION_IDLE_MINUTES", 30)
IOFOLD_PERIODIC_TASKS = {
    # name: (task, every N seconds)
    # Runs whose worker died go back in the queue (those on another machine are noticed
    # only by their heartbeat, so the sweep runs often); runs nobody picks up are failed.
    "reap stale runs": ("iofold.reaper.reap_stale_runs_task", 60),
    # Verdicts whose Langfuse score failed to arrive (outage, rate limit) are sent again.
    "resend undelivered scores": ("evals.tasks.push_pending_scores_task", 600),
    # Conversations idle for their idle time are marked complete (then judged).
    "complete idle conversations": ("iofold.pipeline.complete_idle_conversations_task", 60),
    # Workspaces that opted in get drifting or contradicted evals refined into shadow.
    "refine drifting evals": ("evals.tasks.auto_refine_task", 600),
    # Workspaces whose scheduled deletion (manage.py delete_workspace) is due are deleted.
    "delete workspaces when due": ("workspaces.tasks.delete_due_workspaces_task", 3600),
}
# Global schedules of earlier releases, whose tasks are gone: setup_periodic_tasks deletes
# these rows by name (and no others), so beat never sends a task no worker knows.
IOFOLD_RETIRED_PERIODIC_TASKS = ["reap stale sync runs", "reap stale generations and eval runs"]
