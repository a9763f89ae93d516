"""LOMS settings: everything comes from the environment or `.env` (see `.env.sample`).

Profiles (`ENVIRONMENT`): `dev` (local, forgiving defaults), `paper` (a server trading on paper,
behind TLS), `live` (real money). Orders go to the broker of `BROKER_MODE` (paper, demo, live).
"""

from __future__ import annotations

import os
import re
import warnings
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from lomsite.config import EnvConfig, redact_url_password

BASE_DIR = Path(__file__).resolve().parent.parent
env = EnvConfig(Path(os.environ.get("LOMS_ENV_FILE", BASE_DIR / ".env")))

ENVIRONMENT = env.str("ENVIRONMENT", "dev", choices=("dev", "paper", "live"))
IS_DEV = ENVIRONMENT == "dev"

SECRET_KEY = env.str("SECRET_KEY", None, secret=True)
if not SECRET_KEY:
    if not IS_DEV:
        raise ImproperlyConfigured(
            f"SECRET_KEY: required when ENVIRONMENT={ENVIRONMENT} (generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`)"
        )
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-paper-or-live"
DEBUG = env.bool("DEBUG", IS_DEV)
if DEBUG and not IS_DEV:  # debug pages show settings, SQL and source code to whoever triggers an error
    raise ImproperlyConfigured(
        f"DEBUG: must be false when ENVIRONMENT={ENVIRONMENT} (debug pages expose settings "
        "and source code); remove DEBUG or set DEBUG=false"
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"] if IS_DEV else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", [])

# --- Broker (issue #11; docs/LIVE.md) -------------------------------------------------------------
# paper: the simulator, never a private request; demo: the exchange's demo trading (real API, fake
# funds); live: real money. demo and live need the hardened profile and a non-empty SYMBOL_ALLOWLIST.
BROKER_MODE = env.str("BROKER_MODE", "paper", choices=("paper", "demo", "live"))
BROKER_EXCHANGE = env.str("BROKER_EXCHANGE", "bitget", choices=("bitget", "bybit"))
BITGET_API_KEY = env.str("BITGET_API_KEY", "", secret=True)
BITGET_API_SECRET = env.str("BITGET_API_SECRET", "", secret=True)
BITGET_API_PASSPHRASE = env.str("BITGET_API_PASSPHRASE", "", secret=True)
BYBIT_API_KEY = env.str("BYBIT_API_KEY", "", secret=True)
BYBIT_API_SECRET = env.str("BYBIT_API_SECRET", "", secret=True)
BROKER_HTTP_TIMEOUT = env.float("BROKER_HTTP_TIMEOUT", 10.0, minimum=0.1)
LIVE_MAX_NOTIONAL_USDT = env.decimal("LIVE_MAX_NOTIONAL_USDT", Decimal("20"), minimum=Decimal("0"))
LIVE_MAX_ACCOUNT_USDT = env.decimal("LIVE_MAX_ACCOUNT_USDT", Decimal("150"), minimum=Decimal("0"))
LIVE_LEVERAGE = env.int("LIVE_LEVERAGE", 1, minimum=1)
LIVE_MARGIN_MODE = env.str("LIVE_MARGIN_MODE", "isolated", choices=("isolated", "cross"))
LIVE_ACKNOWLEDGE = env.str("LIVE_ACKNOWLEDGE", "")  # must be exactly LIVE_ACKNOWLEDGE_PHRASE for live
LIVE_ACKNOWLEDGE_PHRASE = "I accept real losses"
# Pre-trade sanity (all broker modes): refuse a stale signal, or one whose price is too far from the
# current quote. Empty: off. Default: on in demo/live (60 s, 2 %), off in paper.
MAX_SIGNAL_AGE_SEC = env.int("MAX_SIGNAL_AGE_SEC", None if BROKER_MODE == "paper" else 60, minimum=1, optional=True)
MAX_SIGNAL_PRICE_DEVIATION_PCT = env.decimal(
    "MAX_SIGNAL_PRICE_DEVIATION_PCT",
    None if BROKER_MODE == "paper" else Decimal("2"),
    minimum=Decimal("0"),
    optional=True,
)
RECONCILE_INTERVAL_SEC = env.int("RECONCILE_INTERVAL_SEC", 60, minimum=10)
RECONCILE_SUBMITTED_GRACE_SEC = env.int("RECONCILE_SUBMITTED_GRACE_SEC", 60, minimum=5)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "apitokens.apps.ApiTokensConfig",  # hashed API tokens (replaces rest_framework.authtoken)
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "axes",  # login throttling and lockout (lomsite/loginguard.py)
    "oms.apps.OmsConfig",
    "ops.apps.OpsConfig",
    "pricing.apps.PricingConfig",
    "risk.apps.RiskConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into the 429 answer
]

ROOT_URLCONF = "lomsite.urls"
WSGI_APPLICATION = "lomsite.wsgi.application"
APPEND_SLASH = False  # the bot's paths answer with and without a trailing slash by themselves

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
                "oms.console.context_processors.console",
            ],
            "libraries": {"console": "oms.console.templatetags"},
        },
    },
]

# Database: SQLite file under data/ by default, anything dj-database-url understands otherwise.
DATA_DIR = BASE_DIR / "data"
DATABASE_URL = env.str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'loms.sqlite3'}", redact=redact_url_password)
try:
    _database = dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL: {exc}") from None
# How long a request waits for a database lock someone else holds; past it the API answers 503 with
# Retry-After (oms/api/errors.py). PostgreSQL's lock_timeout; SQLite's busy timeout.
DB_LOCK_TIMEOUT_SEC = env.int("DB_LOCK_TIMEOUT_SEC", 30, minimum=1)
if _database["ENGINE"] == "django.db.backends.postgresql":
    _database.setdefault("OPTIONS", {})["options"] = f"-c lock_timeout={DB_LOCK_TIMEOUT_SEC * 1000}"
if _database["ENGINE"] == "django.db.backends.sqlite3":
    _database["ENGINE"] = "lomsite.sqlite"  # Django's SQLite, making the file's directory on first connect
    _database["CONN_MAX_AGE"] = 0 if IS_DEV else 60
    # WAL lets readers and one writer work together; IMMEDIATE takes the write lock at BEGIN so a
    # transaction never fails half-way on lock upgrade; the busy timeout makes writers queue.
    _database["OPTIONS"] = {
        "timeout": DB_LOCK_TIMEOUT_SEC,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
        f"PRAGMA busy_timeout={DB_LOCK_TIMEOUT_SEC * 1000};",
    }
    # Tests use a real file (not shared-cache memory) so concurrency tests see real SQLite locking.
    # One file per test run (by pid) so parallel runs on one machine never share a test database.
    _database["TEST"] = {"NAME": str(DATA_DIR / f"test_loms_{os.getpid()}.sqlite3")}
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes, lomsite/loginguard.py): LOGIN_FAILURE_LIMIT failed logins lock the
# login for LOGIN_LOCKOUT_MIN minutes (429); a success resets the count. Unlock: `axes_reset_username`.
# lomsite.permissions.ModelBackend: Django's, reading a user's permissions in one query instead of two.
AUTHENTICATION_BACKENDS = ["lomsite.loginguard.LoginGuardBackend", "lomsite.permissions.ModelBackend"]
AXES_ENABLED = env.bool("LOGIN_LOCKOUT_ENABLED", True)
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MIN", 15, minimum=1))
_lockout_by = env.str("LOGIN_LOCKOUT_BY", "username_ip", choices=("username_ip", "username", "ip"))
AXES_LOCKOUT_PARAMETERS = {"username_ip": [["username", "ip_address"]], "username": ["username"], "ip": ["ip_address"]}[
    _lockout_by
]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "lomsite.loginguard.client_ip"
AXES_USERNAME_CALLABLE = "lomsite.loginguard.login_username"
AXES_VERBOSE = False  # lomsite/loginguard.py logs the events as JSON
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Importing settings creates nothing on disk. `collectstatic` makes STATIC_ROOT (install and upgrade
# steps in docs/RUNBOOK.md; `check` warns when it is missing outside dev); until then WhiteNoise would
# warn on every start, and DEBUG serves the files from the apps anyway.
warnings.filterwarnings("ignore", message=r"No directory at: .*staticfiles")  # WhiteNoise, missing STATIC_ROOT
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

# --- Security (paper and live run behind TLS) ---------------------------------------------------
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", not IS_DEV)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", not IS_DEV)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 0 if IS_DEV else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not IS_DEV
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = ["security.W021"]  # HSTS preload is a one-way door; operators opt in at the proxy

# --- Trading -------------------------------------------------------------------------------------
AUDIT_LOG_PATH = Path(env.str("AUDIT_LOG_PATH", str(DATA_DIR / "audit" / "signals.jsonl")))
OMS_ENABLED = env.bool("OMS_ENABLED", True)
DEFAULT_EXCHANGE = env.str("DEFAULT_EXCHANGE", "bitget")
DEFAULT_QTY = env.decimal("DEFAULT_QTY", Decimal("1.0"), minimum=Decimal("0"))
DEFAULT_NOTIONAL_USDT = env.decimal("DEFAULT_NOTIONAL_USDT", Decimal("0"), minimum=Decimal("0"))
# Sizing by risk (issue #12 §4): set, a signal risks this percent of its epoch's equity down to its stop
# (qty = equity × pct / 100 / |entry − stop|, capped by the notional limits); empty: the signal's qty.
RISK_PER_TRADE_PCT = env.decimal("RISK_PER_TRADE_PCT", None, minimum=Decimal("0"), optional=True)
if RISK_PER_TRADE_PCT is not None and not Decimal("0") < RISK_PER_TRADE_PCT <= Decimal("100"):
    raise ImproperlyConfigured("RISK_PER_TRADE_PCT: must be greater than 0 and at most 100")
# The starting capital of an epoch that `new_epoch --capital` did not set (and of the epochs before it).
STARTING_CAPITAL_USDT = env.decimal("STARTING_CAPITAL_USDT", Decimal("10000"), minimum=Decimal("0"))
if STARTING_CAPITAL_USDT <= 0:
    raise ImproperlyConfigured("STARTING_CAPITAL_USDT: must be greater than 0")
DEFAULT_TP_PCT = env.decimal("DEFAULT_TP_PCT", Decimal("4.5"), minimum=Decimal("0"))
DEFAULT_SL_PCT = env.decimal("DEFAULT_SL_PCT", Decimal("1.5"), minimum=Decimal("0"))
if DEFAULT_QTY <= 0:
    raise ImproperlyConfigured("DEFAULT_QTY: must be greater than 0")
for _key, _value in (("DEFAULT_TP_PCT", DEFAULT_TP_PCT), ("DEFAULT_SL_PCT", DEFAULT_SL_PCT)):
    if not Decimal("0") < _value < Decimal("100"):
        raise ImproperlyConfigured(f"{_key}: must be greater than 0 and less than 100")
# Value sanity at intake (issue #12 §3), in percent of the entry price. Defaults fit a 5-minute bounce:
# a TP/SL nearer than MIN_TP_SL_PCT is eaten by fees (taker ~0.06 % a side) and spread; one farther than
# MAX_TP_PCT / MAX_SL_PCT is not a 5-minute bounce level (a typo, or percent sent as a price).
MIN_TP_SL_PCT = env.decimal("MIN_TP_SL_PCT", Decimal("0.2"), minimum=Decimal("0"))
MAX_TP_PCT = env.decimal("MAX_TP_PCT", Decimal("20"), minimum=Decimal("0"))
MAX_SL_PCT = env.decimal("MAX_SL_PCT", Decimal("10"), minimum=Decimal("0"))
for _key, _value, _max in (
    ("DEFAULT_TP_PCT", DEFAULT_TP_PCT, MAX_TP_PCT),
    ("DEFAULT_SL_PCT", DEFAULT_SL_PCT, MAX_SL_PCT),
):
    if not MIN_TP_SL_PCT <= _value <= _max:
        raise ImproperlyConfigured(
            f"{_key}: must be between MIN_TP_SL_PCT ({MIN_TP_SL_PCT}) and "
            f"{'MAX_TP_PCT' if _key == 'DEFAULT_TP_PCT' else 'MAX_SL_PCT'} ({_max})"
        )
DEFAULT_EXIT_STRATEGY = env.str(
    "DEFAULT_EXIT_STRATEGY", "tp_sl_static", choices=("tp_sl_static", "tp_sl_trailing_v1", "tp_scale_out")
)
PAPER_FEE_RATE = env.decimal("PAPER_FEE_RATE", Decimal("0"), minimum=Decimal("0"))
PAPER_SLIPPAGE_BPS = env.decimal("PAPER_SLIPPAGE_BPS", Decimal("0"), minimum=Decimal("0"))
# Funding on open paper positions at each funding time, when prices come from an exchange's
# perpetuals (never with the simulator, a replay or spot): oms/services/funding.py.
PAPER_FUNDING = env.bool("PAPER_FUNDING", True)

# Risk limits: empty means "no limit".
MAX_OPEN_POSITIONS = env.int("MAX_OPEN_POSITIONS", None, minimum=0, optional=True)
# On an exchange one symbol is one net position with one TP/SL: demo/live allow one LOMS position per symbol.
MAX_OPEN_POSITIONS_PER_SYMBOL = env.int(
    "MAX_OPEN_POSITIONS_PER_SYMBOL", None if BROKER_MODE == "paper" else 1, minimum=0, optional=True
)
MAX_SIZE_PER_POSITION_USDT = env.decimal("MAX_SIZE_PER_POSITION_USDT", None, minimum=Decimal("0"), optional=True)
MAX_TOTAL_EXPOSURE_USDT = env.decimal("MAX_TOTAL_EXPOSURE_USDT", None, minimum=Decimal("0"), optional=True)
SYMBOL_ALLOWLIST = env.list("SYMBOL_ALLOWLIST", [], upper=True)
SYMBOL_DENYLIST = env.list("SYMBOL_DENYLIST", [], upper=True)
# Positions opened per UTC day (every way a position opens), in total and per symbol. Formerly
# MAX_SIGNALS_PER_DAY[_PER_SYMBOL], a misleading name (a blocked or duplicate signal never counted):
# the old names still work, with a deprecation warning (`check` shows it as lomsite.W001).
env.rename("MAX_SIGNALS_PER_DAY", "MAX_POSITIONS_PER_DAY")
env.rename("MAX_SIGNALS_PER_DAY_PER_SYMBOL", "MAX_POSITIONS_PER_DAY_PER_SYMBOL")
MAX_POSITIONS_PER_DAY = env.int("MAX_POSITIONS_PER_DAY", None, minimum=0, optional=True)
MAX_POSITIONS_PER_DAY_PER_SYMBOL = env.int("MAX_POSITIONS_PER_DAY_PER_SYMBOL", None, minimum=0, optional=True)
SL_COOLDOWN_MIN = env.int("SL_COOLDOWN_MIN", None, minimum=0, optional=True)
DAILY_LOSS_LIMIT_USDT = env.decimal("DAILY_LOSS_LIMIT_USDT", None, minimum=Decimal("0"), optional=True)
# Automatic trips (oms/services/trips.py): reaching one turns the OMS switch off until a person re-arms it.
MAX_DRAWDOWN_USDT = env.decimal("MAX_DRAWDOWN_USDT", None, minimum=Decimal("0"), optional=True)
MAX_CONSECUTIVE_SL = env.int("MAX_CONSECUTIVE_SL", None, minimum=1, optional=True)

# --- Prices --------------------------------------------------------------------------------------
PRICE_SOURCE = env.str("PRICE_SOURCE", "simulator", choices=("simulator", "exchange", "replay"))
PRICE_MODE = env.str("PRICE_MODE", "last", choices=("last", "bid", "ask", "mid", "mark"))
PRICE_EXCHANGE = env.str("PRICE_EXCHANGE", "dummy", choices=("dummy", "bybit", "bitget"))
PRICE_HTTP_TIMEOUT = env.float("PRICE_HTTP_TIMEOUT", 5.0, minimum=0.1)
PRICE_SIMULATOR_SEED = env.int("PRICE_SIMULATOR_SEED", None, optional=True)
PRICE_MAX_AGE_SEC = env.float("PRICE_MAX_AGE_SEC", 30.0, minimum=0.1)  # older exchange quotes are failed quotes
BYBIT_BASE_URL = env.str("BYBIT_BASE_URL", "https://api.bybit.com")
BYBIT_CATEGORY = env.str("BYBIT_CATEGORY", "linear", choices=("spot", "linear"))
BITGET_BASE_URL = env.str("BITGET_BASE_URL", "https://api.bitget.com")
BITGET_PRODUCT = env.str("BITGET_PRODUCT", "usdt-futures", choices=("spot", "usdt-futures"))
for _key, _url in (("BYBIT_BASE_URL", BYBIT_BASE_URL), ("BITGET_BASE_URL", BITGET_BASE_URL)):
    if not _url.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{_key}: must start with http:// or https:// (got {_url!r})")
if BROKER_MODE != "paper":
    if IS_DEV:
        raise ImproperlyConfigured(f"BROKER_MODE={BROKER_MODE}: needs the hardened profile (ENVIRONMENT=paper or live)")
    if not SYMBOL_ALLOWLIST:
        raise ImproperlyConfigured(f"SYMBOL_ALLOWLIST: must list the traded symbols when BROKER_MODE={BROKER_MODE}")
    if MAX_OPEN_POSITIONS_PER_SYMBOL is None or MAX_OPEN_POSITIONS_PER_SYMBOL > 1:
        raise ImproperlyConfigured(
            f"MAX_OPEN_POSITIONS_PER_SYMBOL: at most 1 when BROKER_MODE={BROKER_MODE} (the "
            "exchange nets a symbol into one position with one TP/SL)"
        )
    if PRICE_SOURCE != "exchange" or PRICE_EXCHANGE not in ("bybit", "bitget"):
        # The pre-trade sanity check and the sweep would compare real signals with simulated prices.
        raise ImproperlyConfigured(
            f"PRICE_SOURCE: must be exchange with PRICE_EXCHANGE=bybit or bitget when "
            f"BROKER_MODE={BROKER_MODE} (got PRICE_SOURCE={PRICE_SOURCE}, "
            f"PRICE_EXCHANGE={PRICE_EXCHANGE}): real signals are checked against real prices"
        )
    if BROKER_MODE == "live" and LIVE_ACKNOWLEDGE != LIVE_ACKNOWLEDGE_PHRASE:
        raise ImproperlyConfigured(
            f"LIVE_ACKNOWLEDGE: BROKER_MODE=live trades real money; set it to exactly "
            f"{LIVE_ACKNOWLEDGE_PHRASE!r} to confirm"
        )
REPLAY_FILE = env.str("REPLAY_FILE", "")  # CSV or JSONL of ts,symbol,bid,ask,last,mark for PRICE_SOURCE=replay
if PRICE_SOURCE == "replay" and not REPLAY_FILE:
    raise ImproperlyConfigured("REPLAY_FILE: required when PRICE_SOURCE=replay")

# --- Auto-close ----------------------------------------------------------------------------------
_interval = env.float("AUTO_CLOSE_INTERVAL_SEC", 1.0)
AUTO_CLOSE_INTERVAL_SEC = _interval if _interval > 0 else 1.0
AUTO_CLOSE_INTERVAL_CLAMPED = _interval <= 0  # reported as a system check warning
MIN_POSITION_AGE_SEC = env.int("MIN_POSITION_AGE_SEC", 7, minimum=0)
AUTO_CLOSE_STALE_SEC = env.int("AUTO_CLOSE_STALE_SEC", 30, minimum=2)  # /health turns degraded past this
# One django-q task sweeps for AUTO_CLOSE_LOOP_SEC, then hands over to its successor; it must end
# well inside the django-q task timeout (120 s), and a graceful cluster stop waits for it (15 s
# stays inside `serve`'s 20 s grace). The lease that keeps sweeps exclusive lapses
# AUTO_CLOSE_LEASE_SEC after its holder's last renewal (a killed worker is replaced after that).
AUTO_CLOSE_LOOP_SEC = env.float("AUTO_CLOSE_LOOP_SEC", 15.0, minimum=2.0)
AUTO_CLOSE_LEASE_SEC = env.float("AUTO_CLOSE_LEASE_SEC", 10.0, minimum=1.0)
if AUTO_CLOSE_LOOP_SEC + AUTO_CLOSE_LEASE_SEC > 100:
    raise ImproperlyConfigured("AUTO_CLOSE_LOOP_SEC: loop + lease must stay under 100 s (django-q task timeout 120 s)")
TRAILING_ACTIVATION_PCT = env.decimal("TRAILING_ACTIVATION_PCT", Decimal("1.0"), minimum=Decimal("0"))
TRAILING_DISTANCE_PCT = env.decimal("TRAILING_DISTANCE_PCT", Decimal("0.5"), minimum=Decimal("0"))
if not Decimal("0") < TRAILING_DISTANCE_PCT < Decimal("100"):
    raise ImproperlyConfigured("TRAILING_DISTANCE_PCT: must be greater than 0 and less than 100")
MAX_HOLDING_MIN = env.int("MAX_HOLDING_MIN", None, minimum=1, optional=True)  # empty: no time limit
# tp_scale_out: the first take profit closes TP1_FRACTION of the position TP1_PCT % from the entry.
TP1_PCT = env.decimal("TP1_PCT", Decimal("1.0"), minimum=Decimal("0"))
TP1_FRACTION = env.decimal("TP1_FRACTION", Decimal("0.5"), minimum=Decimal("0"))
if not Decimal("0") < TP1_PCT or not Decimal("0") < TP1_FRACTION < Decimal("1"):
    raise ImproperlyConfigured("TP1_PCT must be greater than 0 and TP1_FRACTION between 0 and 1 (both excluded)")

# --- Health and alerts (oms/services/health.py, oms/services/notify.py) ----------------------------
HEALTH_FAILED_SWEEPS = env.int("HEALTH_FAILED_SWEEPS", 3, minimum=1)  # this many failed sweeps in a row: degraded
PRICE_ALERT_AFTER_SEC = env.float("PRICE_ALERT_AFTER_SEC", 120.0, minimum=1.0)  # open symbol without a quote
BACKUP_MAX_AGE_HOURS = env.float("BACKUP_MAX_AGE_HOURS", 26.0, minimum=0.0)  # 0: backup age not checked
# Apprise URLs (space or comma separated), e.g. tgram://bottoken/chatid, discord://id/token,
# mailtos://user:pass@host?to=ops@example.org, json://hooks.example.org/loms. Empty: nothing is sent.
NOTIFY_URLS = env.str("NOTIFY_URLS", "", secret=True)
NOTIFY_REPEAT_MIN = env.int("NOTIFY_REPEAT_MIN", 60, minimum=1)  # the same alert at most once per this
NOTIFY_DEGRADED_AFTER_SEC = env.int("NOTIFY_DEGRADED_AFTER_SEC", 300, minimum=0)  # a reason lasting this long
NOTIFY_MAX_ATTEMPTS = env.int("NOTIFY_MAX_ATTEMPTS", 5, minimum=1)
NOTIFY_DAILY_AT = env.str("NOTIFY_DAILY_AT", "00:05")  # UTC, HH:MM: the daily summary of the day before
if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", NOTIFY_DAILY_AT):
    raise ImproperlyConfigured(f"NOTIFY_DAILY_AT: must be HH:MM in 24-hour UTC time (got {NOTIFY_DAILY_AT!r})")

# --- API -----------------------------------------------------------------------------------------
API_ALLOW_ANONYMOUS = env.bool("API_ALLOW_ANONYMOUS", IS_DEV)
if API_ALLOW_ANONYMOUS and not IS_DEV:
    raise ImproperlyConfigured("API_ALLOW_ANONYMOUS: only allowed when ENVIRONMENT=dev")
SIGNAL_HMAC_SECRET = env.str("SIGNAL_HMAC_SECRET", "", secret=True)
SIGNAL_HMAC_WINDOW_SEC = env.int("SIGNAL_HMAC_WINDOW_SEC", 300, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apitokens.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["oms.api.permissions.ApiPermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's defaults, with a JSON parser that also refuses bodies nested too deep (a 400, not a 500).
    "DEFAULT_PARSER_CLASSES": [
        "oms.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "oms.api.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": False,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "LOMS API",
    "DESCRIPTION": "Paper-trading order and position manager: signal intake, positions, orders, stats.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Operations: backups, audit rotation, shadow-mode report (docs/RUNBOOK.md) -------------------
BACKUP_DIR = Path(env.str("BACKUP_DIR", str(DATA_DIR / "backups")))
BACKUP_RETENTION_DAYS = env.int("BACKUP_RETENTION_DAYS", 30, minimum=1)  # prune refuses < 7 unless --force
BACKUP_SCHEDULE_ENABLED = env.bool("BACKUP_SCHEDULE_ENABLED", True)
BACKUP_DAILY_AT = env.str("BACKUP_DAILY_AT", "03:30")  # UTC, HH:MM
if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", BACKUP_DAILY_AT):
    raise ImproperlyConfigured(f"BACKUP_DAILY_AT: must be HH:MM in 24-hour UTC time (got {BACKUP_DAILY_AT!r})")
AUDIT_MAX_BYTES = env.int("AUDIT_MAX_BYTES", 50_000_000, minimum=0)  # 0: no size rotation
AUDIT_ROTATE_DAILY = env.bool("AUDIT_ROTATE_DAILY", True)
SHADOW_MIN_TRADES = env.int("SHADOW_MIN_TRADES", 200, minimum=1)
SHADOW_MIN_WINRATE_PCT = env.decimal("SHADOW_MIN_WINRATE_PCT", Decimal("45"), minimum=Decimal("0"))
SHADOW_MAX_DRAWDOWN_USDT = env.decimal("SHADOW_MAX_DRAWDOWN_USDT", Decimal("100"), minimum=Decimal("0"))
SHADOW_MAX_OPEN_AGE_HOURS = env.int("SHADOW_MAX_OPEN_AGE_HOURS", 24, minimum=1)

# --- django-q2 -----------------------------------------------------------------------------------
Q_CLUSTER = {
    "name": "loms",
    "orm": "default",
    "workers": env.int("Q_WORKERS", 2, minimum=2),
    "timeout": 120,
    "retry": 180,
    "max_attempts": 1,
    "catch_up": False,  # missed runs after downtime must not all fire at once
    "poll": 0.2,
    "save_limit": 500,
    "ack_failures": True,
    "label": "Task queue",
}

# --- Logging: one JSON object per line ---------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "lomsite.jsonlog.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        "django_q": {"level": "WARNING"},
        "apprise": {"level": "WARNING"},  # its DEBUG/INFO lines print the notification URLs' paths (tokens)
        # ccxt logs each request with its headers (the exchange API key) at DEBUG: never below WARNING.
        "ccxt": {"level": "WARNING"},
    },
}
