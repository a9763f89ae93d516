"""`.env.sample` documents every configuration key the settings read."""

import re
from pathlib import Path

from lomsite import settings as settings_module

SAMPLE = Path(__file__).resolve().parent.parent / ".env.sample"


def test_every_setting_read_from_the_environment_is_documented_in_env_sample():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", SAMPLE.read_text(), flags=re.MULTILINE))
    read = {entry.key for entry in settings_module.env.report()}
    assert read - documented == set(), "add these keys to .env.sample"
    assert documented - read == set(), "these keys in .env.sample are not read by the settings"
