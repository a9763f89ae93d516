"""The dependency files: runtime set pinned with hashes, dev tools apart, and make installing the right set."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEV_TOOLS = {"pytest", "pytest-django", "ruff", "responses", "hypothesis", "schemathesis", "playwright"}
# Used by the other parts of LOMS and so part of the runtime set, at these versions.
REQUIRED_RUNTIME = {"ccxt": "4.5.90", "apprise": "2.3.0", "django-axes": "8.3.1", "django": "5.2.19"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(name: str) -> dict[str, tuple[str, list[str]]]:
    """{package: (version, hashes)} of a compiled requirements file; fails on any line that is not a pin."""
    text = (ROOT / name).read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert match, f"{name}: not a pinned requirement with hashes: {line!r}"
        package, version, hashes = match.groups()
        assert canonical(package) not in found, f"{name}: {package} twice"
        found[canonical(package)] = (version, hashes.split())
    return found


def direct(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            package, version = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[a-z,]+\])?==(\S+)", line).groups()
            pins[canonical(package)] = version
    return pins


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt", "requirements-pip.txt"])
def test_every_line_is_pinned_with_at_least_one_hash(name):
    pins = requirements(name)
    assert pins
    assert all(hashes for _, hashes in pins.values()), [p for p, (_, h) in pins.items() if not h]


def test_the_runtime_set_holds_no_test_or_bench_tool():
    runtime = requirements("requirements.txt")
    dev_only = set(requirements("requirements-dev.txt")) - set(runtime)
    assert DEV_TOOLS <= dev_only
    assert not {"pytest", "iniconfig", "pluggy", "playwright", "greenlet", "schemathesis", "hypothesis"} & set(runtime)


def test_the_runtime_set_holds_what_the_code_imports_at_the_pinned_versions():
    runtime = requirements("requirements.txt")
    for package, version in {**direct("requirements.in"), **REQUIRED_RUNTIME}.items():
        assert runtime[package][0] == version, package
    assert "psycopg-binary" in runtime  # psycopg[binary]: the extra is pinned as its own package


def test_the_dev_set_is_the_runtime_set_plus_the_tools_at_the_same_versions_and_hashes():
    runtime, dev = requirements("requirements.txt"), requirements("requirements-dev.txt")
    assert {package: dev.get(package) for package in runtime} == runtime
    for package, version in direct("requirements-dev.in").items():
        assert dev[package][0] == version, package


def test_pip_itself_is_pinned():
    assert list(requirements("requirements-pip.txt")) == ["pip"]


def make_dry_run(target: str, tmp_path: Path) -> list[str]:
    result = subprocess.run(
        ["make", "-n", "-B", target, f"VENV={tmp_path / 'venv'}", "PYTHON=python3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if "pip install" in line]


def test_make_install_installs_pinned_pip_then_the_runtime_set_only_with_hashes(tmp_path):
    installs = make_dry_run("install", tmp_path)
    assert len(installs) == 2
    assert all("--require-hashes" in line for line in installs)
    assert installs[0].endswith("-r requirements-pip.txt") and installs[1].endswith("-r requirements.txt")


def test_make_test_installs_the_dev_set(tmp_path):
    installs = make_dry_run("test", tmp_path)
    assert installs[0].endswith("-r requirements-pip.txt")
    assert installs[-1].endswith("-r requirements-dev.txt") and "--require-hashes" in installs[-1]


def test_deploy_installs_the_runtime_set_only():
    for path in [*(ROOT / "deploy").iterdir(), ROOT / "docs" / "RUNBOOK.md"]:
        assert "requirements-dev" not in path.read_text(), path
