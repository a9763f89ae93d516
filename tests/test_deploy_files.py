"""deploy/ and docs/RUNBOOK.md stay in step with the code."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OPS_COMMANDS = [
    "backup",
    "verify_backup",
    "restore",
    "prune_backups",
    "check_health",
    "print_stats",
    "send_test_signal",
    "shadow_report",
    "export_positions",
    "new_epoch",
    "close_all",
    "oms_switch",
    "notify_test",
]


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "deploy" / name)
    return parser


@pytest.mark.parametrize("name", ["loms-web.service", "loms-cluster.service"])
def test_the_systemd_units_restart_on_failure_and_read_the_env_file(name):
    service = unit(name)["Service"]
    assert service["Restart"] == "on-failure"
    assert "Environment=LOMS_ENV_FILE=/etc/loms/loms.env" in (ROOT / "deploy" / name).read_text()
    assert service["WorkingDirectory"] == "/opt/loms"


def test_the_web_unit_uses_the_gunicorn_config_that_exists():
    start = unit("loms-web.service")["Service"]["ExecStart"]
    config = re.search(r"--config (\S+)", start).group(1)
    assert (ROOT / config).is_file()


def test_the_paper_env_example_is_a_valid_paper_configuration(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DJANGO_", "AUDIT_", "BACKUP_"))}
    env.update(
        LOMS_ENV_FILE=str(ROOT / "deploy" / "paper.env.example"),
        SECRET_KEY="s" * 60,
        DATABASE_URL=f"sqlite:///{tmp_path / 'paper.sqlite3'}",
        AUDIT_LOG_PATH=str(tmp_path / "a.jsonl"),
        BACKUP_DIR=str(tmp_path / "backups"),
    )
    code = (
        "import os, django; django.setup(); from django.conf import settings as s; "
        "lines = open(os.environ['LOMS_ENV_FILE']).read().splitlines(); "
        "keys = [l.split('=')[0].strip() for l in lines if '=' in l and not l.startswith('#')]; "
        "print([k for k in keys if not hasattr(s, k)], s.ENVIRONMENT)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "DJANGO_SETTINGS_MODULE": "lomsite.settings"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] paper"


def test_the_runbook_covers_every_operations_command_and_the_panic_procedure():
    runbook = (ROOT / "docs" / "RUNBOOK.md").read_text()
    for name in OPS_COMMANDS:
        assert f"{name}" in runbook, name
    for heading in ("First install", "Daily routine", "Panic procedure", "Upgrade", "Restore drill"):
        assert heading in runbook
    assert "oms_switch off --reason" in runbook and "close_all --yes" in runbook
