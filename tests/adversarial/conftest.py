"""Every test under tests/adversarial carries the `adversarial` marker (`pytest -m adversarial`)."""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/adversarial/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.adversarial)
