"""MAX_POSITIONS_PER_DAY[_PER_SYMBOL] replace MAX_SIGNALS_PER_DAY[_PER_SYMBOL]: the old names still work, with a
deprecation warning, and the new ones win when both are set."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lomsite.config import EnvConfig

ROOT = Path(__file__).resolve().parent.parent


def read(environ: dict[str, str]) -> tuple[EnvConfig, int | None]:
    config = EnvConfig(None, environ=environ)
    config.rename("MAX_SIGNALS_PER_DAY", "MAX_POSITIONS_PER_DAY")
    return config, config.int("MAX_POSITIONS_PER_DAY", None, minimum=0, optional=True)


def test_the_new_name_is_read_without_a_warning(recwarn):
    config, value = read({"MAX_POSITIONS_PER_DAY": "7"})
    assert value == 7
    assert config.deprecations == [] and not [w for w in recwarn if w.category is DeprecationWarning]
    assert [(e.key, e.source) for e in config.report()] == [("MAX_POSITIONS_PER_DAY", "environment")]


def test_the_old_name_still_works_with_a_deprecation_warning():
    expected = "MAX_SIGNALS_PER_DAY is deprecated: rename it to MAX_POSITIONS_PER_DAY"
    with pytest.warns(DeprecationWarning, match=expected):
        config, value = read({"MAX_SIGNALS_PER_DAY": "3"})
    assert value == 3
    [entry] = config.report()
    assert (entry.key, entry.source) == ("MAX_POSITIONS_PER_DAY", "environment (deprecated name MAX_SIGNALS_PER_DAY)")


def test_the_new_name_wins_when_both_are_set():
    with pytest.warns(DeprecationWarning, match="MAX_SIGNALS_PER_DAY is ignored"):
        _, value = read({"MAX_SIGNALS_PER_DAY": "3", "MAX_POSITIONS_PER_DAY": "9"})
    assert value == 9


def test_a_bad_value_under_the_old_name_names_the_old_name_as_its_source():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.warns(DeprecationWarning), pytest.raises(ImproperlyConfigured, match="deprecated name MAX_SIGNALS"):
        read({"MAX_SIGNALS_PER_DAY": "many"})


def test_the_settings_and_the_risk_limits_use_the_old_name_and_check_reports_it(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_SIGNALS_PER_DAY_PER_SYMBOL=2\n")
    code = (
        "import django, warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n    django.setup()\nexcept DeprecationWarning as w:\n    print('warned:', w)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAX_", "DATABASE_URL"))}
    env.update(LOMS_ENV_FILE=str(env_file), DJANGO_SETTINGS_MODULE="lomsite.settings")
    warned = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "warned: MAX_SIGNALS_PER_DAY_PER_SYMBOL is deprecated" in warned.stdout, warned.stderr

    code = (
        "import django; django.setup()\nfrom risk.limits import RiskLimits\n"
        "print(RiskLimits.from_settings().max_positions_per_day_per_symbol)\n"
    )
    limits = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert limits.stdout.strip() == "2", limits.stderr

    check = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert "lomsite.W001" in check.stderr + check.stdout
    assert "MAX_SIGNALS_PER_DAY_PER_SYMBOL is deprecated: rename it to MAX_POSITIONS_PER_DAY_PER_SYMBOL" in (
        check.stderr + check.stdout
    )
