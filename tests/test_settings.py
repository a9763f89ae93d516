"""Configuration: strict parsing, the profiles, `show_config`, and `check --deploy`."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from lomsite.config import EnvConfig, redact_url_password

ROOT = Path(__file__).resolve().parent.parent
PAPER = {"ENVIRONMENT": "paper", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "loms.example.org"}


def manage(*args: str, env: dict | None = None, env_file: Path | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "ENVIRONMENT", "SECRET_KEY"}}
    clean.update(LOMS_ENV_FILE=str(env_file or "/nonexistent"), **(env or {}))
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_precedence_is_environment_then_env_file_then_default(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_OPEN_POSITIONS=3\nDEFAULT_TP_PCT=5\n")
    config = EnvConfig(env_file, environ={"MAX_OPEN_POSITIONS": "9"})
    assert config.int("MAX_OPEN_POSITIONS", None, optional=True) == 9
    assert str(config.decimal("DEFAULT_TP_PCT", None)) == "5"
    assert config.int("MIN_POSITION_AGE_SEC", 7) == 7
    assert [(e.key, e.source) for e in config.report()] == [
        ("DEFAULT_TP_PCT", ".env"),
        ("MAX_OPEN_POSITIONS", "environment"),
        ("MIN_POSITION_AGE_SEC", "default"),
    ]


def test_an_empty_limit_means_no_limit():
    assert EnvConfig(None, environ={"MAX_OPEN_POSITIONS": ""}).int("MAX_OPEN_POSITIONS", 5, optional=True) is None


@pytest.mark.parametrize(
    "key,value,reader",
    [
        ("MAX_OPEN_POSITIONS", "ten", lambda c: c.int("MAX_OPEN_POSITIONS", None, optional=True)),
        ("OMS_ENABLED", "maybe", lambda c: c.bool("OMS_ENABLED", True)),
        ("DEFAULT_TP_PCT", "4,5", lambda c: c.decimal("DEFAULT_TP_PCT", None)),
        ("PRICE_MODE", "best", lambda c: c.str("PRICE_MODE", "last", choices=("last", "bid"))),
    ],
)
def test_a_bad_value_names_the_key(key, value, reader):
    with pytest.raises(ImproperlyConfigured, match=key):
        reader(EnvConfig(None, environ={key: value}))


def test_secret_values_are_masked_and_database_passwords_redacted():
    config = EnvConfig(None, environ={"SECRET_KEY": "super-secret", "DATABASE_URL": "postgres://u:pw@h/db"})
    config.str("SECRET_KEY", None, secret=True)
    config.str("DATABASE_URL", "", redact=redact_url_password)
    assert {e.key: e.display for e in config.report()} == {
        "DATABASE_URL": "postgres://u:***@h/db",
        "SECRET_KEY": "********",
    }


@pytest.mark.parametrize(
    "url,shown",
    [
        ("postgres://u@h:5432/db?password=s3cr3t", "postgres://u@h:5432/db?password=***"),
        (
            "postgres://u@h/db?sslmode=require&password=s3cr3t&connect_timeout=5",
            "postgres://u@h/db?sslmode=require&password=***&connect_timeout=5",
        ),
        ("postgres://h/db?sslpassword=s3cr3t", "postgres://h/db?sslpassword=***"),
        ("postgres://h/db?pass%77ord=s3cr3t", "postgres://h/db?pass%77ord=***"),
        ("postgres://u:s3cr3t@h/db?password=s3cr3t", "postgres://u:***@h/db?password=***"),
        ("postgres://u:s3c@r3t@h/db", "postgres://u:***@h/db"),
        ("postgres://u@h/db?options=-c%20search_path%3Dx", "postgres://u@h/db?options=-c%20search_path%3Dx"),
        ("sqlite:////srv/loms/data/loms.sqlite3", "sqlite:////srv/loms/data/loms.sqlite3"),
    ],
)
def test_a_database_password_is_redacted_in_the_userinfo_and_in_the_query_string(url, shown):
    assert redact_url_password(url) == shown


@pytest.mark.parametrize("profile", ["paper", "live"])
def test_debug_cannot_be_on_in_paper_or_live(profile):
    result = manage("check", env={**PAPER, "ENVIRONMENT": profile, "DEBUG": "true"})
    assert result.returncode != 0 and "DEBUG: must be false when ENVIRONMENT=" + profile in result.stderr
    assert manage("check", env={**PAPER, "ENVIRONMENT": profile, "DEBUG": "false"}).returncode == 0


def test_the_service_refuses_to_start_on_a_bad_value_and_names_the_key():
    result = manage("check", env={"MAX_OPEN_POSITIONS": "lots"})
    assert result.returncode != 0 and "MAX_OPEN_POSITIONS" in result.stderr


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("RISK_PER_TRADE_PCT", "0", "must be greater than 0 and at most 100"),
        ("RISK_PER_TRADE_PCT", "150", "must be greater than 0 and at most 100"),
        ("STARTING_CAPITAL_USDT", "0", "must be greater than 0"),
    ],
)
def test_sizing_by_risk_refuses_a_share_or_capital_that_cannot_size(key, value, message):
    result = manage("check", env={key: value})
    assert result.returncode != 0 and f"{key}: {message}" in result.stderr


def test_sizing_by_risk_starts_with_a_share_and_a_capital():
    assert manage("check", env={"RISK_PER_TRADE_PCT": "0.5", "STARTING_CAPITAL_USDT": "2500"}).returncode == 0


def test_paper_without_secret_key_refuses_to_start_and_says_why():
    result = manage("check", env={"ENVIRONMENT": "paper", "ALLOWED_HOSTS": "x"})
    assert result.returncode != 0 and "SECRET_KEY: required when ENVIRONMENT=paper" in result.stderr


def test_an_exchange_broker_mode_needs_the_hardened_profile():
    result = manage("check", env={"BROKER_MODE": "live"})
    assert result.returncode != 0 and "needs the hardened profile" in result.stderr


def test_an_exchange_broker_mode_needs_a_symbol_allowlist():
    result = manage("check", env={**PAPER, "BROKER_MODE": "demo"})
    assert result.returncode != 0 and "SYMBOL_ALLOWLIST: must list the traded symbols" in result.stderr


EXCHANGE_PRICES = {"PRICE_SOURCE": "exchange", "PRICE_EXCHANGE": "bybit"}


def test_an_exchange_broker_mode_allows_one_position_per_symbol():
    env = {**PAPER, **EXCHANGE_PRICES, "BROKER_MODE": "demo", "SYMBOL_ALLOWLIST": "BTCUSDT"}
    result = manage("check", env={**env, "MAX_OPEN_POSITIONS_PER_SYMBOL": "2"})
    assert result.returncode != 0 and "MAX_OPEN_POSITIONS_PER_SYMBOL: at most 1" in result.stderr
    assert manage("check", env=env).returncode == 0  # defaults to 1 in demo/live


def test_live_needs_the_explicit_acknowledgement():
    env = {**PAPER, **EXCHANGE_PRICES, "ENVIRONMENT": "live", "BROKER_MODE": "live", "SYMBOL_ALLOWLIST": "BTCUSDT"}
    result = manage("check", env=env)
    assert result.returncode != 0 and "LIVE_ACKNOWLEDGE" in result.stderr
    assert manage("check", env={**env, "LIVE_ACKNOWLEDGE": "I accept real losses"}).returncode == 0


def test_an_exchange_broker_mode_refuses_simulated_prices_naming_the_key():
    env = {**PAPER, "BROKER_MODE": "demo", "SYMBOL_ALLOWLIST": "BTCUSDT"}
    result = manage("check", env={**env, "PRICE_SOURCE": "simulator"})
    assert result.returncode != 0
    assert "PRICE_SOURCE: must be exchange with PRICE_EXCHANGE=bybit or bitget" in result.stderr
    result = manage("check", env={**env, "PRICE_SOURCE": "exchange", "PRICE_EXCHANGE": "dummy"})
    assert result.returncode != 0 and "PRICE_SOURCE: must be exchange" in result.stderr
    assert manage("check", env={**env, **EXCHANGE_PRICES}).returncode == 0


def test_show_config_says_set_or_unset_for_exchange_keys_and_never_shows_them():
    result = manage("show_config", env={"BITGET_API_SECRET": "marker-secret-123", "BYBIT_API_KEY": ""})
    assert result.returncode == 0
    assert "marker-secret-123" not in result.stdout
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "BITGET_API_SECRET" in lines and "BYBIT_API_KEY" in lines


def test_anonymous_api_is_refused_outside_dev():
    result = manage("check", env={**PAPER, "API_ALLOW_ANONYMOUS": "true"})
    assert result.returncode != 0 and "API_ALLOW_ANONYMOUS" in result.stderr


@pytest.mark.parametrize("profile", ["paper", "live"])
def test_check_deploy_is_clean_in_the_paper_and_live_profiles(profile):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={**PAPER, "ENVIRONMENT": profile})
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_show_config_says_where_each_value_came_from(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_OPEN_POSITIONS=3\nSECRET_KEY=from-dotenv-secret\n")
    result = manage("show_config", env={"MAX_OPEN_POSITIONS": "12"}, env_file=env_file)
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:] if line.strip()}
    assert lines["MAX_OPEN_POSITIONS"] == ["environment", "12"]
    assert lines["SECRET_KEY"] == [".env", "********"]
    assert lines["MIN_POSITION_AGE_SEC"] == ["default", "7"]
    assert "from-dotenv-secret" not in result.stdout


def test_show_config_prints_the_effective_value_with_what_was_set():
    result = manage("show_config", env={"AUTO_CLOSE_INTERVAL_SEC": "0", "NOTIFY_URLS": "tgram://123:secret-tok/42"})
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:] if line.strip()}
    assert lines["AUTO_CLOSE_INTERVAL_SEC"] == ["environment", "1.0", "(set:", "0.0)"]
    assert lines["MIN_POSITION_AGE_SEC"] == ["default", "7"]  # unchanged values print once
    assert lines["NOTIFY_URLS"] == ["environment", "********"] and "secret-tok" not in result.stdout
